"""ColonINST evaluation: reference-exact metrics, file scoring, plots and the evaluate suite.

- :mod:`colonpipe.evaluate.metrics`: pure per-record/corpus metric functions;
- :mod:`colonpipe.evaluate.score`: one prediction file -> score dict (``colonpipe score``);
- :mod:`colonpipe.evaluate.report`: tables, plots and DVC-plots data, written atomically;
- :mod:`colonpipe.evaluate.suite`: every split and task of a run -> metrics/ and plots/.
"""
