"""`charrnn serve`'s HTTP side (the `serve` extra): requests, state, answers, the app, the listener."""
