"""The benchmark tasks (``benchapp/tasks.py``)."""
