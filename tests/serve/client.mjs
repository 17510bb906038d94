// The official OpenAI client against `qvl serve` (run by tests/test_serve_openai.c):
//   node tests/serve/client.mjs PORT IMAGE PROMPT MAX_TOKENS
// A plain and a streamed greedy chat completion with the image as a data URL, and one refused
// request; prints one JSON object with what came back.
import { readFileSync } from "node:fs";
import OpenAI from "openai";

const [port, image, prompt, maxTokens] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "unused", maxRetries: 0, timeout: 60000 });
const url = `data:image/png;base64,${readFileSync(image).toString("base64")}`;
const messages = [
  {
    role: "user",
    content: [
      { type: "image_url", image_url: { url } },
      { type: "text", text: prompt },
    ],
  },
];
const models = await client.models.list();
const model = models.data[0].id;
const plain = await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: Number(maxTokens) });
const stream = await client.chat.completions.create({
  model,
  messages,
  temperature: 0,
  max_tokens: Number(maxTokens),
  stream: true,
  stream_options: { include_usage: true },
});
let streamed = "";
let streamFinish = null;
let streamUsage = null;
for await (const chunk of stream) {
  if (chunk.choices.length) {
    streamed += chunk.choices[0].delta.content ?? "";
    if (chunk.choices[0].finish_reason) streamFinish = chunk.choices[0].finish_reason;
  }
  if (chunk.usage) streamUsage = chunk.usage;
}
let errorStatus = 0;
try {
  await client.chat.completions.create({ model, messages: [], max_tokens: 1 });
} catch (e) {
  errorStatus = e.status ?? -1;
}
console.log(
  JSON.stringify({
    model: plain.model,
    plain: plain.choices[0].message.content,
    finish_reason: plain.choices[0].finish_reason,
    prompt_tokens: plain.usage.prompt_tokens,
    completion_tokens: plain.usage.completion_tokens,
    streamed,
    stream_finish_reason: streamFinish,
    stream_completion_tokens: streamUsage ? streamUsage.completion_tokens : -1,
    error_status: errorStatus,
  }),
);
