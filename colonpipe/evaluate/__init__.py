"""ColonINST evaluation: reference-exact metrics, file scoring, plots and the evaluate suite.

- :mod:`colonpipe.evaluate.metrics`: pure per-record/corpus metric functions and the scoring rules;
- :mod:`colonpipe.evaluate.records`: prediction files -> scorable rows, file-level checks;
- :mod:`colonpipe.evaluate.score`: one prediction file -> score dict;
- :mod:`colonpipe.evaluate.report`: tables, plots and DVC-plots data, written atomically;
- :mod:`colonpipe.evaluate.suite`: every split and task of a run -> metrics/ and plots/;
- :mod:`colonpipe.evaluate.command`: ``colonpipe score``.
"""
