"""Loading a training output folder (base + LoRA adapter + projector) for inference."""

import shutil

import numpy as np
import pytest
from PIL import Image

from colonpipe.infer.generate import generate_answers
from colonpipe.infer.load import ModelLoadError, load_for_inference
from colonpipe.model import checkpoint_files as ck
from tests.infer.conftest import QUESTIONS
from tests.trained import write_lora_output


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory, tiny_model_dir):
    """A ``final/``-style folder: LoRA with non-zero B (so the adapter matters) + a changed projector."""
    return write_lora_output(tiny_model_dir, tmp_path_factory.mktemp("trained") / "final")


def _samples(n):
    rng = np.random.default_rng(3)
    return ([QUESTIONS[i % 4] for i in range(n)],
            [Image.fromarray(rng.integers(0, 256, (40, 30 + 5 * i, 3), dtype=np.uint8)) for i in range(n)])


def test_training_output_loads_merged_and_matches_the_adapter_model(trained_dir, tiny_model_dir):
    out, peft_model, processor = trained_dir
    model, proc = load_for_inference(out, threads=1)
    assert not any("lora_" in n for n, _ in model.named_parameters())  # adapter merged away
    questions, images = _samples(6)
    got = generate_answers(model, proc, questions, images, batch_size=3, max_new_tokens=16)
    want = generate_answers(peft_model, processor, questions, images, batch_size=1, max_new_tokens=16)
    base, base_proc = load_for_inference(tiny_model_dir, threads=1)
    plain = generate_answers(base, base_proc, questions, images, batch_size=3, max_new_tokens=16)
    assert got == want
    assert got != plain  # the adapter and projector really were applied


def test_incomplete_training_output_is_a_clear_error(trained_dir, tmp_path):
    out = shutil.copytree(trained_dir[0], tmp_path / "final")
    (out / ck.PROJECTOR_FILE).unlink()  # e.g. a copy that stopped half-way
    with pytest.raises(ModelLoadError, match=r"final: cannot load the model .*projector"):
        load_for_inference(out)
