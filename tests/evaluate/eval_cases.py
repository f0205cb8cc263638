"""Hand-written reference-format records for the evaluation tests.

The expected numbers in the tests are computed by hand from these records.
"""

import json


def record(rid, question, answer, prediction=None, *, with_prediction=True):
    """One ColonINST record; ``prediction`` becomes the appended reference-format third turn."""
    turns = [{"from": "human", "value": "<image>\n" + question}, {"from": "gpt", "value": answer}]
    if with_prediction:
        turns.append({"from": "prediction", "value": prediction})
    return {"id": rid, "image": rid.rsplit("/", 1)[-1].rsplit(".", 1)[0], "conversations": turns}


def strip_prediction(records):
    """The source records a prediction file was made from."""
    out = []
    for r in records:
        out.append({**r, "conversations": [t for t in r["conversations"] if t["from"] != "prediction"]})
    return out


# CLS: 2 of 4 right (EOS + upper case; upper case), one wrong, one without prediction turn.
CLS = [
    record("DsA/Test/polyp/1.png", "Categorize the object.", "polyp", "Polyp<|endoftext|>"),
    record("DsA/Test/ulcer/2.png", "Classify the object's category.", "ulcer", "ULCER"),
    record("DsB/Test/polyp/3.png", "Categorize the object.", "polyp", "adenoma"),
    record("DsB/Test/erosion/4.png", "Categorize the object.", "erosion", with_prediction=False),
]

# REC: IoU 1, 0.5 (not a hit), 1/7 (spaces + EOS), 0 (3 numbers), 0 (no prediction turn).
REC = [
    record("DsA/Test/polyp/1.png", "Where is polyp located?", "{<0><0><9><9>}", "{<0><0><9><9>}"),
    record("DsA/Test/polyp/2.png", "Where is the location of polyp?", "{<0><0><19><9>}", "{<0><0><9><9>}"),
    record("DsB/Test/ulcer/3.png", "Could you give the position of ulcer?", "{<5><5><14><14>}",
           "{< 0 >< 0 >< 9 >< 9 >}<|endoftext|>"),
    record("DsB/Test/ulcer/4.png", "Please specify the coordinates of ulcer.", "{<0><0><9><9>}", "{<1><2><3>}"),
    record("DsB/Test/blood/5.png", "Where is blood fresh located?", "{<0><0><9><9>}", with_prediction=False),
]
REC_AVG = (1 + 0.5 + 25 / 175) / 5
REC_ACC = 1 / 5

# CLS where the two rules differ: the reference's exact match gets 2 of 8 right, the stripped
# (lenient) form 6 of 8. Outer whitespace on either side is what separates them.
WHITESPACE = [
    record("DsA/Test/polyp/1.png", "Categorize the object.", "polyp", "polyp "),  # lenient only
    record("DsA/Test/polyp/2.png", "Categorize the object.", "polyp", "polyp\n"),  # lenient only
    record("DsA/Test/ulcer/3.png", "Categorize the object.", "ulcer", " ulcer<|endoftext|>"),  # lenient only
    record("DsA/Test/polyp/4.png", "Categorize the object.", "polyp ", "polyp"),  # answer side: lenient only
    record("DsB/Test/polyp/5.png", "Categorize the object.", "polyp", "Polyp<|ENDOFTEXT|>"),  # both: lower() first
    record("DsB/Test/erosion/6.png", "Categorize the object.", "erosion", "Erosion"),  # both
    record("DsB/Test/adenoma/7.png", "Categorize the object.", "low grade adenoma", "low grade  adenoma"),  # neither
    record("DsB/Test/erosion/8.png", "Categorize the object.", "erosion", "polyp"),  # neither
]
WHITESPACE_REFERENCE, WHITESPACE_LENIENT = 2 / 8, 6 / 8

# Training file for the baselines: CLS majority "polyp"; REC mean box (1, 1, 12, 12).
TRAIN = [
    record("DsA/Train/polyp/10.png", "Categorize the object.", "polyp", with_prediction=False),
    record("DsA/Train/polyp/11.png", "Categorize the object.", "polyp", with_prediction=False),
    record("DsA/Train/ulcer/12.png", "Categorize the object.", "ulcer", with_prediction=False),
    record("DsA/Train/ulcer/12.png", "What category does {<1><1><5><5>} belong to?", "ulcer", with_prediction=False),
    record("DsA/Train/polyp/10.png", "Where is polyp located?", "{<0><0><10><10>}", with_prediction=False),
    record("DsA/Train/polyp/11.png", "Where is polyp located?", "{<2><2><13><13>}", with_prediction=False),
]


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path


