#!/usr/bin/env python3
"""Writes tests/fixtures/configs/{2b,4b,8b,8b-tf5}/ : config.json, preprocessor_config.json and
generation_config.json with the released Qwen3-VL Instruct shapes (docs/model.md tables 1.1/1.2).
2b/4b/8b use the released (transformers 4.57) layout: rope_theta + rope_scaling and dtype inside
text_config. 8b-tf5 is the same model as transformers 5.x saves it: rope_parameters, top-level dtype.
Stdlib only; run from the repository root: python3 tools/make_config_fixtures.py"""
import json
import os

SIZES = {
    #      D,    I,     L,  H,  tie,   Dv,   Iv,   depth, deepstack
    "2b": (2048, 6144, 28, 16, True, 1024, 4096, 24, [5, 11, 17]),
    "4b": (2560, 9728, 36, 32, True, 1024, 4096, 24, [5, 11, 17]),
    "8b": (4096, 12288, 36, 32, False, 1152, 4304, 27, [8, 16, 24]),
}


def config(size, tf5=False):
    d, i, layers, heads, tie, dv, iv, depth, ds = SIZES[size]
    text = {
        "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645,
        "head_dim": 128, "hidden_act": "silu", "hidden_size": d, "initializer_range": 0.02,
        "intermediate_size": i, "max_position_embeddings": 262144, "model_type": "qwen3_vl_text",
        "num_attention_heads": heads, "num_hidden_layers": layers, "num_key_value_heads": 8,
        "rms_norm_eps": 1e-06, "tie_word_embeddings": tie, "use_cache": True, "vocab_size": 151936,
    }
    rope = {"mrope_interleaved": True, "mrope_section": [24, 20, 20], "rope_type": "default"}
    if tf5:
        text["rope_parameters"] = dict(rope, rope_theta=5000000)
    else:
        text["dtype"] = "bfloat16"
        text["rope_scaling"] = rope
        text["rope_theta"] = 5000000
    cfg = {
        "architectures": ["Qwen3VLForConditionalGeneration"],
        "image_token_id": 151655, "model_type": "qwen3_vl", "text_config": text,
        "tie_word_embeddings": tie,
        "transformers_version": "5.0.0" if tf5 else "4.57.0.dev0",
        "video_token_id": 151656,
        "vision_config": {
            "deepstack_visual_indexes": ds, "depth": depth, "hidden_act": "gelu_pytorch_tanh",
            "hidden_size": dv, "in_channels": 3, "initializer_range": 0.02, "intermediate_size": iv,
            "model_type": "qwen3_vl", "num_heads": 16, "num_position_embeddings": 2304,
            "out_hidden_size": d, "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
        },
        "vision_end_token_id": 151653, "vision_start_token_id": 151652,
    }
    if tf5:
        cfg["dtype"] = "bfloat16"
    return cfg


PREPROC = {
    "size": {"longest_edge": 16777216, "shortest_edge": 65536}, "patch_size": 16, "temporal_patch_size": 2,
    "merge_size": 2, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    "processor_class": "Qwen3VLProcessor", "image_processor_type": "Qwen2VLImageProcessorFast",
}
GENERATION = {
    "bos_token_id": 151643, "pad_token_id": 151643, "do_sample": True, "eos_token_id": [151645, 151643],
    "top_k": 20, "top_p": 0.8, "repetition_penalty": 1.0, "temperature": 0.7,
    "transformers_version": "4.56.0",
}


def write(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def main():
    root = "tests/fixtures/configs"
    for name, size, tf5 in [("2b", "2b", False), ("4b", "4b", False), ("8b", "8b", False), ("8b-tf5", "8b", True)]:
        d = os.path.join(root, name)
        os.makedirs(d, exist_ok=True)
        write(os.path.join(d, "config.json"), config(size, tf5))
        write(os.path.join(d, "preprocessor_config.json"), PREPROC)
        write(os.path.join(d, "generation_config.json"), GENERATION)


if __name__ == "__main__":
    main()
