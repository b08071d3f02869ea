"""One module per DVC stage, each a `main()` over the engine:
`python -m pipeline.stages.<stage>`."""
