"""A tiny template engine, in the style of the real ones: templates are
compiled once into nodes, then rendered per request with HTML escaping.

Syntax: {{ name.attr }} inserts a value (escaped); {% for x in seq %} ...
{% endfor %} repeats a block.
"""

import html
import re

TEMPLATES = {
    "orders.html": """<!doctype html>
<html><head><title>{{ title }}</title></head>
<body>
<h1>{{ title }}</h1>
<p>{{ user.name }} &lt;{{ user.email }}&gt;, region {{ user.region }}</p>
<table>
<tr><th>order</th><th>day</th><th>product</th><th>qty</th><th>amount</th></tr>
{% for o in orders %}<tr><td>{{ o.id }}</td><td>{{ o.day }}</td><td>{{ o.sku }}</td><td>{{ o.qty }}</td><td>{{ o.amount }}</td></tr>
{% endfor %}</table>
<p>total {{ total }}</p>
</body></html>
""",
}

_TOKEN = re.compile(r"({{.*?}}|{%.*?%})", re.S)
_compiled = {}


class TemplateError(Exception):
    pass


def tokenize(text):
    return [t for t in _TOKEN.split(text) if t]


def parse(tokens, pos=0, until=None):
    """Nodes: ("text", s), ("var", path), ("for", name, path, body)."""
    nodes = []
    while pos < len(tokens):
        tok = tokens[pos]
        pos += 1
        if tok.startswith("{{"):
            nodes.append(("var", tok[2:-2].strip().split(".")))
        elif tok.startswith("{%"):
            words = tok[2:-2].split()
            if words and words[0] == until:
                return nodes, pos
            if len(words) == 4 and words[0] == "for" and words[2] == "in":
                body, pos = parse(tokens, pos, "endfor")
                nodes.append(("for", words[1], words[3].split("."), body))
            else:
                raise TemplateError("bad tag %r" % tok)
        else:
            nodes.append(("text", tok))
    if until:
        raise TemplateError("missing {%% %s %%}" % until)
    return nodes, pos


def compile_template(name):
    nodes = _compiled.get(name)
    if nodes is None:
        nodes, _ = parse(tokenize(TEMPLATES[name]))
        _compiled[name] = nodes
    return nodes


def lookup(context, path):
    value = context[path[0]]
    for part in path[1:]:
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return value


def render_nodes(nodes, context, out):
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "var":
            out.append(html.escape(str(lookup(context, node[1]))))
        else:
            _, name, path, body = node
            for item in lookup(context, path):
                render_nodes(body, dict(context, **{name: item}), out)


def render(name, context):
    out = []
    render_nodes(compile_template(name), context, out)
    return "".join(out)
