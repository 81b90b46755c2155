"""The `amosync` command line (`main`), with the demo it can run (`demo`)."""
