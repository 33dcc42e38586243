"""Repository rule: CPython headers and embedding flags from python3-config.

Honours PYTHON_BIN_PATH (the interpreter to build against); otherwise uses
/usr/bin/python3 when present, else the first python3 on PATH. The flags come
from `<python>-config --embed`, the way CPython documents embedding; when no
-config script sits next to the interpreter, sysconfig supplies the same data.
"""

_QUERY = """
import sysconfig, sys
v = sysconfig.get_config_var
print(sysconfig.get_paths()["include"])
print(v("LIBDIR") or "")
print("python" + v("LDVERSION"))
print(v("LIBS") or "")
print(sys.version_info[0], sys.version_info[1])
"""

def _fail(msg):
    fail("python_configure: " + msg)

def _find_python(rctx):
    path = rctx.os.environ.get("PYTHON_BIN_PATH", "")
    if path:
        if not rctx.path(path).exists:
            _fail("PYTHON_BIN_PATH=%s does not exist" % path)
        return path
    if rctx.path("/usr/bin/python3").exists:
        return "/usr/bin/python3"
    found = rctx.which("python3")
    if not found:
        _fail("no python3 found; set PYTHON_BIN_PATH")
    return str(found)

def _python_configure_impl(rctx):
    python = _find_python(rctx)
    res = rctx.execute([python, "-c", _QUERY])
    if res.return_code != 0:
        _fail("%s failed: %s" % (python, res.stderr))
    include, libdir, libname, libs, version = res.stdout.strip().split("\n")
    if not rctx.path(include + "/Python.h").exists:
        _fail("%s has no Python.h: install the -dev package (python3-dev)" % include)

    linkopts = []
    config = python + "-config"
    if rctx.path(config).exists:
        res = rctx.execute([config, "--embed", "--ldflags"])
        if res.return_code == 0:
            linkopts = res.stdout.strip().split(" ")
            linkopts = [o for o in linkopts if o]
    if not linkopts:
        linkopts = ["-L" + libdir, "-l" + libname] + [o for o in libs.split(" ") if o]

    rctx.symlink(include, "include")
    rctx.file("BUILD", """
package(default_visibility = ["//visibility:public"])

# Headers only: for extension modules, which get libpython from the interpreter.
cc_library(
    name = "python_headers",
    hdrs = glob(["include/**/*.h"]),
    includes = ["include"],
)

# Headers plus libpython: for programs that embed the interpreter.
cc_library(
    name = "python_embed",
    deps = [":python_headers"],
    linkopts = {linkopts},
)

load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")

py_runtime(
    name = "py3_runtime",
    interpreter_path = "{python}",
    python_version = "PY3",
    stub_shebang = "#!{python}",
)

py_runtime_pair(
    name = "py_runtime_pair",
    py3_runtime = ":py3_runtime",
)

toolchain(
    name = "py_toolchain",
    toolchain = ":py_runtime_pair",
    toolchain_type = "@bazel_tools//tools/python:toolchain_type",
)

exports_files(["python_bin"])
""".format(linkopts = repr(linkopts), python = python))
    rctx.file("python_bin", python + "\n")
    rctx.file("defs.bzl", "PYTHON_BIN = %r\nPYTHON_VERSION = %r\n" % (python, version))

python_configure = repository_rule(
    implementation = _python_configure_impl,
    environ = ["PYTHON_BIN_PATH", "PATH"],
    local = True,
)
