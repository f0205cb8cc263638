"""Batched, sharded, resumable inference over the ColonINST instruction files.

- ``runner.run_inference(InferJob)``: one prediction file (workers + merge), resumable.
- ``worker.run_shard(ShardSpec)``: one shard (the fan-out unit; also a Prefect task body).
- ``generate.generate_answers(model, processor, images, questions, ...)``: in-process batched
  greedy generation, independent of batch size.
- ``merge.merge_predictions`` / ``journal`` / ``shards``: the bookkeeping underneath.
"""
