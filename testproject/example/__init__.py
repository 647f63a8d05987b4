"""The example app of the test project: tasks that show what django-durable does."""
