"""An example host's two targets: its binary and the test that runs it."""

load("@rules_cc//cc:defs.bzl", "cc_binary")

# C flags of the hosts and of embed.c.
HOST_COPTS = [
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Wno-missing-field-initializers",
]

def example_host(name, data, copts = [], linkopts = [], test_deps = [], test_data = []):
    """Defines cc_binary `name` from NAME.c, linked with :embed, statsprof and
    libpython, and py_test NAME_test from tests/NAME_test.py, which runs the
    built binary.

    Args:
      name: the host, e.g. "game_host".
      data: the files the host finds in its runfiles (its Python code).
      copts: C flags beyond HOST_COPTS.
      linkopts: link flags of the binary.
      test_deps: Python libraries the test imports beyond hosttest.
      test_data: files the test needs beyond the binary (e.g. the tools).
    """
    cc_binary(
        name = name,
        srcs = [name + ".c"],
        copts = HOST_COPTS + copts,
        data = data,
        linkopts = linkopts,
        visibility = ["//visibility:public"],
        deps = [
            ":embed",
            "//:statsprof",
            "@local_python//:python_embed",
        ],
    )
    native.py_test(
        name = name + "_test",
        size = "medium",
        srcs = ["tests/%s_test.py" % name],
        data = [":" + name] + test_data,
        main = "tests/%s_test.py" % name,
        python_version = "PY3",
        srcs_version = "PY3",
        deps = [":hosttest"] + test_deps,
    )
