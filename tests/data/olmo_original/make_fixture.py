"""Writes this directory's tiny OLMo in the original format (ai2-olmo's hf_olmo, as allenai/OLMo-7B's
revisions are stored) and the logits of ai2-olmo's own forward pass on fixed token ids, the reference
that tests/test_olmo_original.py checks the conversion against. Needs `pip install ai2-olmo==0.6.0
datasets` (not a test dependency); the tokenizer files come from `tests.helpers.tokenizer()`.

    python tests/data/olmo_original/make_fixture.py
"""

from pathlib import Path

import torch
from hf_olmo import OLMoConfig, OLMoForCausalLM
from safetensors.torch import save_file

HERE = Path(__file__).parent
VOCAB, EMBEDDING = 400, 448  # the test tokenizer's size; OLMo pads its embedding past the vocabulary


def main() -> None:
    torch.manual_seed(0)
    config = OLMoConfig(
        d_model=32,
        n_heads=4,
        n_layers=2,
        mlp_hidden_size=176,
        vocab_size=VOCAB,
        embedding_size=EMBEDDING,
        max_sequence_length=64,
        rope=True,
        alibi=False,
        include_bias=False,
        layer_norm_type="default",
        layer_norm_with_affine=False,
        bias_for_layer_norm=False,
        attention_layer_norm=False,
        weight_tying=False,
        activation_type="swiglu",
        block_type="sequential",
        attention_dropout=0.0,
        residual_dropout=0.0,
        embedding_dropout=0.0,
        init_device="cpu",
        flash_attention=False,
        pad_token_id=1,
        eos_token_id=0,
        clip_qkv=None,
        rope_theta=10000,
        init_fn="normal",
        init_std=0.2,
    )
    config._attn_implementation = "eager"
    model = OLMoForCausalLM(config, init_params=True).eval()
    model.save_pretrained(HERE)
    input_ids = torch.randint(3, VOCAB, (2, 13), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(input_ids=input_ids, use_cache=False, return_dict=True).logits
    save_file({"input_ids": input_ids, "logits": logits.contiguous()}, HERE / "ai2_olmo_logits.safetensors")


if __name__ == "__main__":
    main()
