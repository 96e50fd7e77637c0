"""Stream processing: the Faust app, its agents, and the batch pipeline they call."""
