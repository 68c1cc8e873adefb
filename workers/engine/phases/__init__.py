"""The phases ``compress()`` runs, one module each, in this order:

- ``preparing``: the spec's data, tokenizer, device and teacher (a ``Run``).
- ``teacher_finetune``: a head for the task, when the teacher has none.
- ``prune_distill``: the strategy's rounds, each pruning then distilling.
- ``evaluating``: teacher and student scored and timed side by side.
- ``exporting``: the student saved in each format and checked.
- ``reporting``: report.json, the plots and the model card; the result.

Each takes what the phases before it produced and returns what it did, so each can be
run, and tested, alone. What a run resumes from is a ``RunState`` (run_state.py).
"""
