"""Root conftest: wires the plugin (options, hooks) and the fixture modules."""

pytest_plugins = ["fastnas_bench.plugin", "fixtures.variants", "fixtures.measure"]
