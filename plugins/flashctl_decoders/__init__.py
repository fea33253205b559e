"""flashctl built-in plugin: decoders."""
