"""An in-memory stand-in for the application's database.

Tables are built once at import from a fixed seed. slow_query() sleeps the
way a real round trip to a database server would: time.sleep releases the
GIL, so the host's other workers run Python meanwhile.
"""

import random
import time

NUSERS = 400
NORDERS = 6000
NDAYS = 30
REGIONS = ("EU", "JP", "UK", "US")

_rng = random.Random(42)

PRODUCTS = [{"sku": "SKU-%04d" % i, "name": "Product %d" % i,
             "price": round(_rng.uniform(2.0, 120.0), 2)} for i in range(60)]
_PRODUCT_BY_SKU = {p["sku"]: p for p in PRODUCTS}

USERS = [{"id": i, "name": "user%03d" % i, "region": REGIONS[i % len(REGIONS)],
          "email": "user%03d@example.com" % i} for i in range(1, NUSERS + 1)]

ORDERS = []
for _i in range(NORDERS):
    _p = _rng.choice(PRODUCTS)
    _qty = _rng.randint(1, 5)
    ORDERS.append({"id": _i + 1, "user": _rng.randint(1, NUSERS), "day": _rng.randrange(NDAYS),
                   "sku": _p["sku"], "qty": _qty, "amount": round(_p["price"] * _qty, 2)})

_ORDERS_BY_USER = {}
for _o in ORDERS:
    _ORDERS_BY_USER.setdefault(_o["user"], []).append(_o)


def user(user_id):
    return USERS[user_id - 1]


def product(sku):
    return _PRODUCT_BY_SKU[sku]


def recent_orders(user_id, n):
    orders = _ORDERS_BY_USER.get(user_id, [])
    return sorted(orders, key=lambda o: (o["day"], o["id"]), reverse=True)[:n]


def round_trip(request_id):
    """The network and the database server: 4 to 16 ms, by request id."""
    time.sleep(0.004 * (1 + request_id % 4))


def slow_query(region, request_id):
    """SELECT ... JOIN users WHERE region = ?: a round trip, then the rows."""
    round_trip(request_id)
    return [o for o in ORDERS if USERS[o["user"] - 1]["region"] == region and o["day"] % 3 == 0]
