"""Tests of the images ``make images`` built (``make test`` builds them first; cached by
content, so an unchanged tree costs seconds). They build nothing themselves."""
