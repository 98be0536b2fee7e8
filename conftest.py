"""Root conftest: wires the plugin (options, hooks) and the fixture modules."""

# pytester serves the plugin's own end-to-end tests in tests/.
pytest_plugins = ["fastnas_bench.pytest_plugin.hooks", "fixtures.variants", "fixtures.measure", "pytester"]
