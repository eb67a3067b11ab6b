"""The one place the version lives: the build reads it from here, and so does everything else."""

#: What ``pip install`` calls this project (the import package and the command are ``taskmanager``;
#: ``taskmanager`` on PyPI is an unrelated project).
DISTRIBUTION = "taskmanager-queue"
__version__ = "0.2.0"
