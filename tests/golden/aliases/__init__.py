"""Every way to spell a message type: alias, TypeAlias, Union[...], inline, one class."""
