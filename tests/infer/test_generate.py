import numpy as np
import pytest
import torch
from PIL import Image

from colonpipe.infer.generate import generate_answers, left_pad, length_buckets
from colonpipe.infer.load import ModelLoadError, load_for_inference
from tests.infer.conftest import QUESTIONS


@pytest.fixture(scope="module")
def model_and_processor(tiny_model_dir):
    return load_for_inference(tiny_model_dir, device="cpu", dtype="float32", threads=1)


def _samples(n):
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 256, (30 + 7 * i, 50, 3), dtype=np.uint8)) for i in range(n)]
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(n)]
    return questions, images


def test_length_buckets_sort_and_cover():
    buckets = length_buckets([5, 3, 9, 3, 7], 2)
    assert buckets == [[1, 3], [0, 4], [2]]
    with pytest.raises(ValueError):
        length_buckets([1], 0)


def test_left_pad():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_batch_size_does_not_change_answers(model_and_processor):
    model, processor = model_and_processor
    questions, images = _samples(11)
    lengths = {len(processor.prompt_ids(q)) for q in questions}
    assert len(lengths) >= 3  # batches really mix prompt lengths, so left padding is exercised
    reference = generate_answers(model, processor, questions, images, batch_size=1, max_new_tokens=24)
    assert len(set(reference)) >= 8  # answers differ per sample: a mix-up would show
    for batch_size in (2, 4, 11):
        got = generate_answers(model, processor, questions, images, batch_size=batch_size, max_new_tokens=24)
        assert got == reference, f"batch_size={batch_size}"


def test_stops_at_eos_and_strips(model_and_processor):
    model, processor = model_and_processor
    questions, images = _samples(3)
    head = model.get_output_embeddings()
    saved = head.bias.detach().clone()
    visible = processor.tokenizer.convert_tokens_to_ids("a")
    try:
        with torch.no_grad():
            head.bias[processor.eos_token_id] += 1e4  # the first token is always EOS ...
            head.bias[visible] += 5e3  # ... and "a" the best of the rest
        assert generate_answers(model, processor, questions, images, batch_size=3, max_new_tokens=8) == ["", "", ""]
        forced = generate_answers(model, processor, questions, images, batch_size=3, max_new_tokens=8,
                                  min_new_tokens=8)
        assert forced == ["a" * 8] * 3  # min_new_tokens (benchmarks) suppresses EOS
    finally:
        with torch.no_grad():
            head.bias.copy_(saved)


def test_unloadable_model_dir_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match=str(tmp_path)):
        load_for_inference(tmp_path)
