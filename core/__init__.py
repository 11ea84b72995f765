"""The base every stage stands on: it imports nothing else of the project."""
