"""The systems the side-by-side benchmark compares: TaskManager and four other queues.

``bench.systems.competitors`` drives the others from the harness (which runs in the project's
environment); the ``*_app`` modules are what their workers and enqueuers import, in the bench
environment (``.bench-venv``) where Celery, RQ, Dramatiq and procrastinate are installed.
"""
