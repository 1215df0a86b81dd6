"""Sub-commands of the `compass` CLI, one module each (see COMPASSLib.cli for the protocol)."""
