#!/usr/bin/env python3
"""Builds the tokenizer parity corpus: tests/fixtures/tokenizer/corpus.jsonl, one JSON string per
line. Deterministic (fixed seed, no network): rerunning it gives the same file. Sections: hand-written
text in many scripts, whitespace runs of every kind, numbers, code, LaTeX, URLs, emoji, text that
NFC changes, special-token text inside ordinary text, every OCRBench question and answer, and
seeded random mixtures. Usage: tools/build_tokenizer_corpus.py [OCRBench.json] [out.jsonl]"""
import json
import random
import sys
import unicodedata

OCRBENCH = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/ocrbench/official/OCRBench.json"
OUT = sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/tokenizer/corpus.jsonl"

SCRIPTS = {
    "en": ["Hello world", "The quick brown fox jumps over the lazy dog.", "I'm sure you'll see they've done it, haven't they?",
           "IT'S HE'LL WE'D YOU'RE I'M", "don't  DON'T  Don'T", "'s 't 're 've 'm 'll 'd", "rock'n'roll o'clock",
           "E-mail: john.doe@example.com", "Mr. Smith's 3rd-quarter report (FY2023) shows +12.5% growth!"],
    "zh": ["你好，世界！", "今天天气很好，我们去公园散步吧。", "中华人民共和国成立于1949年。", "这是一个测试：标点符号、引号“你好”和《书名》。"],
    "ja": ["こんにちは、世界。", "東京は日本の首都です。", "カタカナとひらがなと漢字が混ざった文章です。", "ｶﾀｶﾅ半角とＡＢＣ全角"],
    "ko": ["안녕하세요, 세계!", "한국어 문장을 토큰화합니다.", "서울특별시 강남구 123번지"],
    "ar": ["مرحبا بالعالم", "اللغة العربية جميلة جداً.", "٠١٢٣٤٥٦٧٨٩ أرقام عربية", "كتبَ الطالبُ الدرسَ"],
    "hi": ["नमस्ते दुनिया", "हिन्दी भाषा में वाक्य।", "क्षत्रिय ज्ञान श्री", "१२३४५ अंक"],
    "th": ["สวัสดีชาวโลก", "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ", "กรุงเทพมหานคร ๑๒๓"],
    "ru": ["Привет, мир!", "Съешь же ещё этих мягких французских булок.", "ЁЖ ёж"],
    "el": ["Γειά σου Κόσμε", "ΣΊΣΥΦΟΣ σίσυφος"],
    "he": ["שלום עולם", "עִבְרִית"],
    "misc": ["Ünïcödé façade naïve café résumé", "Straße ß ẞ", "İstanbul ıi", "ǅemal ǈ ǋ", "ﬁ ﬂ ﬀ ligatures",
             "Ω Å K ℃ ℉ № ™ ©", "ſ 'ſ it'ſ", "Ⅻ ⅷ ½ ¾ ² ³ ₀₁", "𝐀𝐁𝐂 𝔸𝔹ℂ 𝓐", "ᚠᛇᚻ᛫ᛒᛦᚦ", "ꯀꯁ 𐌰𐌱", "ⓐⓑⓒ ①②③"],
}

EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇺🇸", "🇯🇵🇰🇷", "1️⃣", "❤️", "🏳️‍🌈", "👩🏾‍💻", "🧑‍🤝‍🧑", "✌🏻", "🤷‍♀️", "©️", "🫠", "#️⃣", "🏴󠁧󠁢󠁳󠁣󠁴󠁿"]

# Text that NFC changes (decomposed or singleton forms) and text it leaves alone.
NFC_CASES = ["e\u0301", "cafe\u0301", "A\u030a", "\u212b", "\u2126", "\u212a", "\u1100\u1161\u11a8", "\u1112\u1161\u11ab\u1100\u1173\u11af",
             "o\u0308\u0304", "a\u0323\u0302", "a\u0302\u0323", "\u0041\u0300\u0301", "n\u0303o", "\u0915\u093c", "\u09c7\u09be",
             "\u0b47\u0b3e", "\u0e40\u0e01", "\u00c5\u0301", "\u1e9b\u0323", "\u0301abc", "x\u0301\u0302\u0303\u0304\u0305",
             "\u0344", "\u0958", "\uf900", "\u2fa1d", "\u0374", "\u037e", "\u0387", "\u1fee", "Ω\u0301", "\u0627\u0653"]

WS = [" ", "  ", "\t", "\n", "\r", "\r\n", "\n\n", "\u00a0", "\u3000", "\u2003", "\u2009", "\u200b", "\u180e", "\u0085",
      "\u2028", "\u2029", "\u000b", "\u000c", "\u001c", "\u001d", "\u001e", "\u001f", "\u202f", "\u205f", "\u1680",
      "\ufeff", "\u2060", "\u200d", "\u200c", "\u00ad", " \n", "\n ", "\t\n", " \r\n ", "\r\r\n", "\n\r"]

NUMBERS = ["0", "7", "42", "123", "1234", "12345", "1234567890", "12345678901234567890123456789012345678901234567890",
           "3.14159", "-2.5e-10", "1,000,000", "1 000 000", "0x1F2E", "0b1011", "2024-05-17", "12:30:45", "+1 (555) 123-4567",
           "٣٤٥", "१२३", "１２３", "¹²³", "Ⅳ", "①", "3rd", "1st2nd", "v1.2.3", "$1,234.56", "€99,99", "¥1000", "50%"]

CODE = ["def f(x):\n    return x ** 2\n", "int main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
        "for (let i = 0; i < n; i++) { a[i] += b[i]; }", "SELECT * FROM users WHERE id = 1;",
        "{\"key\": [1, 2, {\"nested\": null}], \"ok\": true}", "<div class=\"x\">Hello &amp; goodbye</div>",
        "#include <stdio.h>\n#define MAX(a,b) ((a)>(b)?(a):(b))", "x = [i*i for i in range(10) if i % 2 == 0]",
        "    if x:\n        pass\n    else:\n\t\tcontinue", "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }",
        "$ ls -la | grep '.txt' && echo \"done\"", "a+=1;b-=2;c*=3;d/=4;e%=5;f<<=6;g>>=7;h&&=i||j",
        "// comment\n/* block */\n# hash\n-- sql", "    \n    \n\n\t \t", "```python\nprint('hi')\n```"]

LATEX = ["$E = mc^2$", "\\frac{a}{b} + \\sqrt{x^2 + y^2}", "\\begin{align} x &= 1 \\\\ y &= 2 \\end{align}",
         "\\int_0^\\infty e^{-x^2} dx = \\frac{\\sqrt{\\pi}}{2}", "$$\\sum_{i=1}^{n} i = \\frac{n(n+1)}{2}$$",
         "\\mathbf{A}\\mathbf{x} = \\mathbf{b}", "\\alpha\\beta\\gamma \\in \\mathbb{R}", "a_{ij}^{(k)}"]

URLS = ["https://www.example.com/path/to/page?query=1&x=y#frag", "http://localhost:8080/", "ftp://files.example.org/a.tar.gz",
        "www.google.com", "https://zh.wikipedia.org/wiki/中国", "mailto:someone@example.com", "file:///home/user/doc.txt",
        "https://github.com/huggingface/tokenizers/blob/main/README.md"]

SPECIAL = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|vision_start|>", "<|image_pad|>", "<|vision_end|>",
           "<|video_pad|>", "<tool_call>", "</tool_call>", "<think>", "</think>", "<|fim_prefix|>", "<|box_start|>",
           "<|object_ref_start|>", "<|quad_end|>", "<|file_sep|>", "<tool_response>"]
NEAR_SPECIAL = ["<|im_start", "<|im_start|", "im_start|>", "< |im_start|>", "<|IM_START|>", "<<|im_end|>>", "<|im_end|><",
                "<think", "</think", "<|", "|>", "<||>", "<|image_pad|x", "<|endoftext|>|>"]


def ocrbench_texts(path):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    out = []
    for item in data:
        out.append(item["question"])
        answers = item["answers"] if isinstance(item["answers"], list) else [item["answers"]]
        out.extend(str(a) for a in answers)
    return out


def random_codepoint(rng):
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF), (0x900, 0x97F),
              (0xE00, 0xE7F), (0x1100, 0x11FF), (0x2000, 0x206F), (0x2190, 0x23FF), (0x3000, 0x30FF), (0x4E00, 0x9FFF),
              (0xAC00, 0xD7A3), (0xFF00, 0xFFEF), (0x1F300, 0x1FAFF), (0x20000, 0x2A6DF), (0xE000, 0xE0FF), (0x1D400, 0x1D7FF),
              (0x0, 0x1F), (0xFFF0, 0xFFFF), (0x10FFF0, 0x10FFFF)]
    lo, hi = rng.choice(ranges)
    while True:
        cp = rng.randint(lo, hi)
        if not 0xD800 <= cp <= 0xDFFF:
            return chr(cp)


def main():
    rng = random.Random(20240517)
    texts = [""]
    for lines in SCRIPTS.values():
        texts.extend(lines)
    texts.extend(EMOJI)
    texts.append("".join(EMOJI))
    texts.append(" ".join(EMOJI))
    texts.extend(NFC_CASES)
    texts.extend(unicodedata.normalize("NFD", t) for t in sum(SCRIPTS.values(), []))
    texts.extend(unicodedata.normalize("NFKD", t) for t in SCRIPTS["misc"])
    texts.extend(NUMBERS)
    texts.extend(CODE)
    texts.extend(LATEX)
    texts.extend(URLS)
    texts.extend(SPECIAL)
    texts.extend(NEAR_SPECIAL)
    # Every whitespace kind alone, doubled, and between/around words, digits and punctuation.
    for w in WS:
        texts += [w, w * 3, "a" + w + "b", w + "a", "a" + w, "1" + w + "2", "." + w + ".", w + "\n", "\n" + w,
                  "x" + w + " y", "x " + w + "y", w + "你好" + w, "!" + w + "!"]
    for a in WS:
        for b in WS:
            texts.append("word" + a + b + "next")
    # Special-token text inside ordinary text.
    for s in SPECIAL:
        texts += ["Hello" + s + "world", s + "\n", "\n" + s, " " + s + " ", s + s, "a " + s + "b", s + "你好", "e\u0301" + s + "\u0301"]
    for s in NEAR_SPECIAL:
        texts += ["x" + s + "y", s + " " + s]
    texts.append("<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is written in the image?<|im_end|>\n<|im_start|>assistant\n")
    # Numbers in context, long numbers.
    for k in range(1, 41):
        texts.append(str(rng.randint(0, 10 ** k)))
        texts.append("x" + "9" * k + "y")
    # All OCRBench questions and answers (deduplicated, order kept).
    texts.extend(ocrbench_texts(OCRBENCH))
    # Seeded random mixtures of all the pieces above.
    pool = sum(SCRIPTS.values(), []) + EMOJI + NFC_CASES + NUMBERS + SPECIAL + NEAR_SPECIAL + LATEX + URLS + CODE
    for _ in range(600):
        parts = [rng.choice(pool) if rng.random() < 0.6 else rng.choice(WS) for _ in range(rng.randint(1, 8))]
        texts.append("".join(parts))
    for _ in range(400):
        texts.append("".join(random_codepoint(rng) for _ in range(rng.randint(1, 24))))
    # Long inputs: a long mixed paragraph, long runs.
    texts.append(" ".join(rng.choice(pool) for _ in range(800)))
    texts += [" " * 1000, "\n" * 300, "a" * 3000, "ab" * 1500, "9" * 2000, " \n" * 200, "\u3000" * 100, "😀" * 300, "你" * 1000]

    seen, out = set(), []
    for t in texts:
        if t not in seen:
            seen.add(t)
            out.append(t)
    with open(OUT, "w", encoding="utf-8") as f:
        for t in out:
            f.write(json.dumps(t, ensure_ascii=False) + "\n")
    print(f"{OUT}: {len(out)} strings")


if __name__ == "__main__":
    main()
