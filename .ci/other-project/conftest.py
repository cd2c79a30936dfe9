pytest_plugins = ["app.testing.plugin"]
