"""Instrumented stand-in apps for the OTLP tests: an OpenAI-compatible HTTP server
(``standin``), a child-process app instrumented by a real library (``app``), and the
script that captured the fixtures in ``tests/fixtures/otlp`` (``capture``)."""
