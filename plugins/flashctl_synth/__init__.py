"""flashctl built-in plugin: synthetic human actors (the `flashctl synth` command)."""
