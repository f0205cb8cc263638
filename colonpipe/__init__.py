"""colonpipe: ColonINST data, ColonGPT training, inference, evaluation."""
