"""The `charrnn` command and what only commands need (explain, plot). The top layer: nothing
below imports it."""
