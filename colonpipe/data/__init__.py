"""Raw sources -> manifest -> ColonINST instruction JSON."""
