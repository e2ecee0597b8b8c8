"""``slm-agents models`` counts parameters from file headers: checked against the gguf library."""

from __future__ import annotations

import numpy as np
import pytest

from slm_agents.models.catalog import gguf_parameters


def write_gguf(path, tensors):
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), arch="llama")
    writer.add_name("tiny")
    writer.add_token_list([f"tok{i}" for i in range(300)])  # a string array, as real vocabularies
    writer.add_token_scores([0.5] * 300)  # a float array
    writer.add_context_length(128)
    for name, shape in tensors.items():
        writer.add_tensor(name, np.zeros(shape, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_gguf_parameters_match_the_gguf_reader(tmp_path):
    from gguf import GGUFReader

    path = tmp_path / "tiny.gguf"
    write_gguf(path, {"token_embd.weight": (300, 16), "blk.0.attn_q.weight": (16, 16), "n": (7,)})
    expected = sum(int(t.n_elements) for t in GGUFReader(str(path)).tensors)
    assert gguf_parameters(path) == expected == 300 * 16 + 16 * 16 + 7


def test_a_file_that_is_not_gguf_is_named(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(ValueError, match="model.gguf is not a GGUF file"):
        gguf_parameters(path)
