"""Processor: template, label masking, padding sides, truncation, image pad/resize/normalise."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.bench_pad import measure, naive_pixel_values
from colonpipe.model import SYSTEM_PROMPT, ColonGPTImageProcessor, ColonGPTProcessor, PromptTooLongError
from colonpipe.model.processing import IGNORE_INDEX, MAX_CANVAS_SIDE, dialogue_text

Q_CLS = "<image>\nClassify the object's category."
Q_REC = "<image>\nWhere is polyp located?"
BOX = "{<123><95><242><195>}"


@pytest.fixture
def proc(tiny) -> ColonGPTProcessor:
    return tiny[1]


def _imgs(n):
    return [Image.new("RGB", (40 + 10 * i, 30), (200, 20 * i, 10)) for i in range(n)]


def test_supervised_tokens_decode_to_answer_plus_eos(proc):
    batch = proc.training_batch([Q_CLS, Q_REC], ["dyed lifted polyp", BOX], _imgs(2))
    tok = proc.tokenizer
    for row, answer in zip(batch["labels"], ["dyed lifted polyp", BOX]):
        supervised = row[row != IGNORE_INDEX].tolist()
        assert tok.decode(supervised) == f" {answer}<|endoftext|>"
        assert supervised[-1] == proc.eos_token_id


def test_prompt_image_and_padding_are_unsupervised_and_padding_is_masked(proc):
    batch = proc.training_batch([Q_CLS, Q_REC], ["polyp", BOX], _imgs(2))
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    assert ids.shape == mask.shape == labels.shape
    assert (labels[ids == proc.image_token_id] == IGNORE_INDEX).all()
    assert ((ids == proc.image_token_id).sum(1) == proc.image_seq_length).all()
    short = int(mask[0].sum())
    assert short < ids.shape[1]  # row 0 is right-padded
    assert (mask[0, :short] == 1).all() and (mask[0, short:] == 0).all()
    assert (labels[0, short:] == IGNORE_INDEX).all()
    # pad == eos: the real closing eos is attended and supervised, the pads (same id) are not
    assert ids[0, short - 1] == ids[0, short] == proc.eos_token_id
    assert labels[0, short - 1] == proc.eos_token_id and mask[0, short - 1] == 1


def test_template_text_and_stable_prompt_boundary(proc):
    prompt = proc.prompt_ids(Q_CLS)
    ex = proc.encode_training(Q_CLS, "polyp")
    assert ex.input_ids[: len(prompt)] == prompt  # the generation prompt is a prefix of the training ids
    text = proc.tokenizer.decode([t for t in ex.input_ids if t != proc.image_token_id])
    assert text == f"{SYSTEM_PROMPT} USER: \nClassify the object's category. ASSISTANT: polyp<|endoftext|>"


def test_box_digits_are_single_tokens(proc):
    pieces = proc.tokenizer.convert_ids_to_tokens(proc.tokenizer(BOX, add_special_tokens=False)["input_ids"])
    digits = [p for p in pieces if any(c.isdigit() for c in p)]
    assert all(len(p) == 1 for p in digits) and "".join(digits) == "1239524219" + "5"


def test_generation_batch_is_left_padded_and_ends_at_assistant(proc):
    batch = proc.generation_batch([Q_CLS, Q_REC + " Please answer with the box in pixels."], _imgs(2))
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert batch["pixel_values"].shape == (2, 3, proc.image_size, proc.image_size)
    n0 = int(mask[0].sum())
    assert (mask[0, : ids.shape[1] - n0] == 0).all() and (mask[0, -n0:] == 1).all()
    assert mask[1].all()
    assert ids[0, -n0:].tolist() == proc.prompt_ids(Q_CLS)
    assert proc.tokenizer.decode(ids[0, -3:]).endswith("ASSISTANT:")


def test_truncation_cuts_the_answer_but_never_the_image(proc):
    n_prompt = len(proc.prompt_ids(Q_REC))
    ex = proc.encode_training(Q_REC, BOX, max_length=n_prompt + 3)
    assert len(ex.input_ids) == n_prompt + 3 and sum(t != IGNORE_INDEX for t in ex.labels) == 3
    with pytest.raises(PromptTooLongError, match="image tokens"):
        proc.encode_training(Q_REC, BOX, max_length=n_prompt)


def test_question_must_hold_exactly_one_image_placeholder(proc):
    with pytest.raises(ValueError, match="exactly one"):
        proc.prompt_ids("Classify the object's category.")
    with pytest.raises(ValueError, match="exactly one"):
        proc.prompt_ids("<image><image>\nClassify.")


def test_pad_to_square_uses_the_mean_colour(proc):
    assert proc.pad_color == (127, 127, 127)
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    sq = np.asarray(proc.pad_to_square(img))
    assert sq.shape == (40, 40, 3)
    assert (sq[:10] == 127).all() and (sq[30:] == 127).all()  # 10 rows above and below
    assert (sq[10:30] == [255, 0, 0]).all()
    tall = np.asarray(proc.pad_to_square(Image.new("RGB", (11, 30), (0, 255, 0))))
    assert tall.shape == (30, 30, 3) and (tall[:, :9] == 127).all() and (tall[:, 9:20] == [0, 255, 0]).all()


def test_pixel_values_are_resized_and_normalised(proc):
    pv = proc.preprocess_images([Image.new("RGB", (200, 100), (255, 0, 127))])
    assert pv.shape == (1, 3, proc.image_size, proc.image_size) and pv.dtype == torch.float32
    centre = pv[0, :, proc.image_size // 2, proc.image_size // 2]
    torch.testing.assert_close(centre, torch.tensor([1.0, -1.0, 127 / 127.5 - 1]), atol=1e-2, rtol=0)
    torch.testing.assert_close(pv[0, :, 0, 0], torch.full((3,), 127 / 127.5 - 1), atol=1e-2, rtol=0)  # pad


# (width, height, mode): odd and even sizes, both orientations, square, the usual colonoscopy
# frame sizes, and the largest sides that still pad to the raw long side.
NORMAL_IMAGES = [(40, 20, "RGB"), (11, 30, "RGB"), (1, 1, "RGB"), (33, 33, "L"), (640, 480, "RGBA"),
                 (576, 720, "P"), (1350, 1080, "RGB"), (1920, 1080, "L"), (1, MAX_CANVAS_SIDE, "RGB"),
                 (MAX_CANVAS_SIDE, 57, "RGB")]


def _noise(w, h, mode, seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)


def test_normal_images_give_byte_identical_pixel_values_to_the_unbounded_canvas(proc):
    images = [_noise(w, h, mode, seed) for seed, (w, h, mode) in enumerate(NORMAL_IMAGES)]
    got = proc.preprocess_images(images)
    want = naive_pixel_values(images, proc.image_size, proc.image_mean, proc.image_std)  # the code before
    assert got.dtype == want.dtype and got.shape == want.shape == (len(images), 3, proc.image_size, proc.image_size)
    assert got.numpy().tobytes() == want.numpy().tobytes()


def test_fitting_an_image_first_changes_no_pixel(proc):
    images = [_noise(w, h, mode, seed) for seed, (w, h, mode) in enumerate(NORMAL_IMAGES[:6])]
    fitted = [proc.fit_image(im) for im in images]
    assert all(f.size == (proc.image_size, proc.image_size) and f.mode == "RGB" for f in fitted)
    assert torch.equal(proc.preprocess_images(fitted), proc.preprocess_images(images))


@pytest.mark.parametrize("size", [(1, 60000), (50000, 3), (MAX_CANVAS_SIDE + 1, 7)])
def test_an_extreme_aspect_ratio_gets_a_bounded_canvas(proc, size):
    w, h = size
    square = np.asarray(proc.pad_to_square(Image.new("RGB", size, (255, 0, 0))))
    assert square.shape == (MAX_CANVAS_SIDE, MAX_CANVAS_SIDE, 3)
    mid = (MAX_CANVAS_SIDE - 1) // 2
    line = square[:, mid] if w < h else square[mid]
    assert (line == [255, 0, 0]).all()  # the strip, downscaled, runs the full side through the centre
    assert (square[0, 0] == 127).all() and (square[-1, -1] == 127).all()  # padded corners
    assert proc.preprocess_images([Image.new("RGB", size)]).shape == (1, 3, proc.image_size, proc.image_size)


def test_peak_memory_of_a_1x60000_png_is_bounded():
    # A fresh interpreter (benchmarks/bench_pad.py) decodes the ~300-byte PNG and preprocesses it;
    # padding to the raw long side would need 60000**2 * 4 B = 13.4 GiB. The bound is the
    # MAX_CANVAS_SIDE**2 canvas (64 MiB) plus the resize's work buffers.
    result = measure(60000, "current", cap_gib=1.0, timeout=120)
    assert result["status"] == "ok" and result["shape"] == [1, 3, 384, 384]
    assert result["growth_mib"] < 100, result


def test_decode_generated_cuts_at_eos_and_strips(proc):
    eos = proc.eos_token_id
    ids = proc.tokenizer(" polyp", add_special_tokens=False)["input_ids"]
    rows = torch.tensor([ids + [eos, eos, eos], ids + ids[:1] + [eos, eos]])
    assert proc.decode_generated(rows)[0] == "polyp"


def test_save_and_load_round_trip(proc, tmp_path):
    proc.save_pretrained(tmp_path)
    assert {"processor_config.json", "chat_template.jinja", "tokenizer.json"} <= {p.name for p in tmp_path.iterdir()}
    again = ColonGPTProcessor.from_pretrained(tmp_path)
    assert again.to_dict() == proc.to_dict()
    assert again.chat_template == proc.chat_template
    assert again.prompt_ids(Q_REC) == proc.prompt_ids(Q_REC)
    (tmp_path / "processor_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="processor_config.json"):
        ColonGPTProcessor.from_pretrained(tmp_path)


def test_auto_processor_loads_a_saved_model_folder(tiny_base):
    from transformers import AutoImageProcessor, AutoProcessor

    auto = AutoProcessor.from_pretrained(tiny_base)
    assert type(auto) is ColonGPTProcessor and type(AutoImageProcessor.from_pretrained(tiny_base)) is ColonGPTImageProcessor
    own = ColonGPTProcessor.from_pretrained(tiny_base)
    assert auto.to_dict() == own.to_dict() and auto.prompt_ids(Q_CLS) == own.prompt_ids(Q_CLS)


def test_a_folder_saved_before_the_processor_mixin_still_loads(proc, tmp_path):
    proc.tokenizer.save_pretrained(tmp_path)
    (tmp_path / "chat_template.jinja").unlink(missing_ok=True)
    legacy = {"processor_class": "ColonGPTProcessor", "image_size": proc.image_size,
              "image_seq_length": proc.image_seq_length, "image_mean": list(proc.image_mean),
              "image_std": list(proc.image_std), "system_prompt": proc.system_prompt}
    (tmp_path / "colongpt_processor.json").write_text(json.dumps(legacy))
    again = ColonGPTProcessor.from_pretrained(tmp_path)
    assert again.prompt_ids(Q_REC) == proc.prompt_ids(Q_REC) and again.chat_template == proc.chat_template
    assert torch.equal(again.preprocess_images(_imgs(2)), proc.preprocess_images(_imgs(2)))
    (tmp_path / "colongpt_processor.json").write_text("{not json")
    with pytest.raises(ValueError, match="colongpt_processor.json"):
        ColonGPTProcessor.from_pretrained(tmp_path)


def _task_dialogues() -> list[tuple[str, str]]:
    """One ColonINST (question, answer) per task, every question template included."""
    from colonpipe.coloninst import HUMAN_PREFIX, format_box
    from colonpipe.data.templates import TEMPLATES, render_question

    box = format_box((12, 305, 97, 380))
    answers = {"cls": "dyed lifted polyp", "reg": "ulcer", "rec": box,
               "cap": "The image shows a polyp, 5 mm, on a fold. It is pinkish."}
    return [(HUMAN_PREFIX + render_question(task, i, box=box, category="blood fresh"), answers[task])
            for task in TEMPLATES for i in range(len(TEMPLATES[task]))]


def _conversation(question: str, answer: str | None = None, system: str | None = None) -> list[dict]:
    text = question.removeprefix("<image>\n")
    conv = [{"role": "system", "content": system}] if system else []
    conv.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]})
    if answer is not None:
        conv.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return conv


@pytest.mark.parametrize("system", [None, "You are a colonoscopy assistant."])
def test_chat_template_gives_the_training_and_inference_tokens_exactly(proc, system):
    """apply_chat_template (tokenised through the processor) == the encode path, for every task
    and question template, with the processor's system prompt or one given as a system message."""
    from colonpipe.data.templates import TEMPLATES

    assert set(TEMPLATES) == {"cls", "reg", "rec", "cap"}
    ref = proc if system is None else ColonGPTProcessor(proc.tokenizer, proc.image_processor,
                                                        proc.image_seq_length, system_prompt=system)
    image = _imgs(1)
    for question, answer in _task_dialogues():
        prompt = proc.apply_chat_template(_conversation(question, system=system), add_generation_prompt=True)
        assert prompt == f"{ref.system_prompt} USER: {question} ASSISTANT:"
        ids = proc.apply_chat_template(_conversation(question, system=system), add_generation_prompt=True,
                                       tokenize=True, processor_kwargs={"images": image})
        assert ids[0].tolist() == ref.prompt_ids(question)
        full = proc.apply_chat_template(_conversation(question, answer, system), tokenize=True,
                                        return_dict=True, processor_kwargs={"images": image})
        assert full["input_ids"][0].tolist() == ref.encode_training(question, answer).input_ids
        assert torch.equal(full["pixel_values"], proc.preprocess_images(image))
        assert proc.decode(full["input_ids"][0]) == \
            dialogue_text(question, answer, system_prompt=ref.system_prompt).replace(
                "<image>", "<image>" * proc.image_seq_length) + "<|endoftext|>"


def test_call_checks_images_against_placeholders(proc):
    text = proc.apply_chat_template(_conversation(Q_CLS), add_generation_prompt=True)
    with pytest.raises(ValueError, match="2 images for 1"):
        proc(images=_imgs(2), text=[text])
    batch = proc(images=_imgs(2), text=[text, proc.apply_chat_template(_conversation(Q_REC), add_generation_prompt=True)])
    want = proc.generation_batch([Q_CLS, Q_REC], _imgs(2))
    assert all(torch.equal(batch[k], want[k]) for k in ("input_ids", "attention_mask", "pixel_values"))
