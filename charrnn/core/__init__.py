"""The core: vocabulary, reading files into a corpus, data layout, cells and the model. Imports
nothing else of charrnn's but ``charrnn.config`` and ``charrnn.errors``."""
