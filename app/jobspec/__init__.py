"""What a compression job may ask for and what a teacher allows, in plain Python.

The API (``app/``) and the engine (``workers/engine/``) both build on this package, and
it imports neither: the vocabulary of a job (``vocabulary.py``), the model families
(``families/``), the planner that sizes a student from a teacher's config.json
(``plan.py``, ``speed_plan.py``, ``speed_steps.py``), the rules a request must keep
(``rules.py``) and the registry helper the engine registers its parts with
(``registry.py``). No torch, no web, database or queue imports: docs/architecture.md,
"Rules that keep it simple".
"""
