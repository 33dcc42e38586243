"""The web application that server_host serves (host_examples/server_host.c).

Host API:
    ROUTES   list of (name, handler, weight). The host's load generator sends
             each request to one route, picked with probability
             weight / sum(weights). A handler is called with the request id
             (an int >= 1) and returns the response body (a str).

Four kinds of request, each with a different profile:
    api         parse a JSON body, price the order, serialize the reply
    page        look up a user and render an HTML page from a template
    slow_query  a "database" round trip that sleeps (the GIL is released)
    report      a CPU-heavy sales report over thousands of rows

Pure Python standard library. Responses are deterministic for a request id;
only slow_query's sleep depends on the clock.
"""

import json

import db
import reports
import templates

CURRENCY_RATES = {"EUR": 1.0, "USD": 1.08, "GBP": 0.86, "JPY": 161.0}
TAX_RATES = {"EU": 0.21, "US": 0.07, "UK": 0.20, "JP": 0.10}


class BadRequest(ValueError):
    """The request body does not match what the API expects."""


# ---- api -----------------------------------------------------------------

def client_body(request_id):
    """The JSON body a client would POST for this request (deterministic)."""
    user = db.user(request_id % db.NUSERS + 1)
    items = [{"sku": db.PRODUCTS[(request_id * 7 + i * 3) % len(db.PRODUCTS)]["sku"],
              "qty": 1 + (request_id + i) % 4}
             for i in range(2 + request_id % 5)]
    currency = sorted(CURRENCY_RATES)[request_id % len(CURRENCY_RATES)]
    return json.dumps({"order": "o-%d" % request_id, "user": user["id"],
                       "currency": currency, "items": items})


def validate(req):
    for field, kind in (("order", str), ("user", int), ("currency", str), ("items", list)):
        if not isinstance(req.get(field), kind):
            raise BadRequest("field %r must be a %s" % (field, kind.__name__))
    if req["currency"] not in CURRENCY_RATES:
        raise BadRequest("unknown currency %r" % req["currency"])
    for item in req["items"]:
        if not isinstance(item.get("qty"), int) or item["qty"] < 1:
            raise BadRequest("bad quantity in %r" % item)


def price_item(item, currency, region):
    product = db.product(item["sku"])
    net = product["price"] * item["qty"] * CURRENCY_RATES[currency]
    tax = net * TAX_RATES[region]
    return {"sku": item["sku"], "name": product["name"], "qty": item["qty"],
            "net": round(net, 2), "tax": round(tax, 2), "total": round(net + tax, 2)}


def handle_api(request_id):
    req = json.loads(client_body(request_id))
    validate(req)
    region = db.user(req["user"])["region"]
    lines = [price_item(item, req["currency"], region) for item in req["items"]]
    reply = {"order": req["order"], "currency": req["currency"], "lines": lines,
             "total": round(sum(line["total"] for line in lines), 2)}
    return json.dumps(reply, sort_keys=True)


# ---- page ----------------------------------------------------------------

def handle_page(request_id):
    user = db.user(request_id % db.NUSERS + 1)
    orders = db.recent_orders(user["id"], 10)
    context = {
        "title": "Orders of " + user["name"],
        "user": user,
        "orders": [{"id": o["id"], "day": o["day"], "sku": o["sku"], "qty": o["qty"],
                    "amount": "%.2f" % o["amount"]} for o in orders],
        "total": "%.2f" % sum(o["amount"] for o in orders),
    }
    return templates.render("orders.html", context)


# ---- slow_query ----------------------------------------------------------

def handle_slow_query(request_id):
    region = sorted(TAX_RATES)[request_id % len(TAX_RATES)]
    rows = db.slow_query(region, request_id)
    by_day = {}
    for row in rows:
        by_day[row["day"]] = by_day.get(row["day"], 0.0) + row["amount"]
    return json.dumps({"region": region, "rows": len(rows),
                       "by_day": {d: round(v, 2) for d, v in sorted(by_day.items())}})


# ---- report --------------------------------------------------------------

def handle_report(request_id):
    return reports.sales_report(first_day=request_id % 20, days=10)


ROUTES = [
    ("api", handle_api, 50),
    ("page", handle_page, 25),
    ("slow_query", handle_slow_query, 15),
    ("report", handle_report, 10),
]
