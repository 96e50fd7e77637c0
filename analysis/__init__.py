"""Offline analysis of what the stream stored: compare, report and drift of files.

Beside ``processors`` (the stream), not under it: these read storage through a query
function, or files, and never touch Faust or Kafka.
"""
