"""Batched, sharded, resumable inference over the ColonINST instruction files.

- ``task.infer_task(task, model_dir=, data_dir=, image_root=, out_dir=, params=)``: one task
  over its splits (what ``stages/infer.py`` calls); ``task.resolve_runtime`` fills the autos.
- ``runner.run_inference(InferJob)``: one prediction file - worker processes + merge, resumable.
- ``worker.run_shard(ShardSpec)``: one shard (the fan-out unit; also a Prefect task body).
- ``generate.generate_answers(model, processor, questions, images, ...)``: in-process batched
  greedy generation whose answers do not depend on the batch size.
- ``load.load_for_inference(model_dir, ...)``: a saved ColonGPT or a training output folder.
- ``merge_shards`` / ``journal`` / ``shards`` / ``records``: the bookkeeping underneath.
"""
