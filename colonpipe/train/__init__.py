"""Training: two-stage ColonGPT recipe (align: projector on CAP; finetune: LoRA/full LM + projector).

Entry points: :func:`colonpipe.train.trainer.run_training` (one run, in this process),
:func:`colonpipe.train.stage.train_stage` (what ``stages/align.py`` / ``stages/finetune.py`` call:
launcher + MLflow + run), :func:`colonpipe.model.trained.load_trained` (a trained dir back as a
model) and ``colonpipe merge`` (adapter folded into a full model folder).
"""
