"""A CPU-heavy sales report: grouping, statistics and a text table over
thousands of orders, all while holding the GIL."""

import statistics

import db


def group_by_product(orders):
    groups = {}
    for o in orders:
        groups.setdefault(o["sku"], []).append(o["amount"])
    return groups


def percentile(sorted_values, q):
    if not sorted_values:
        return 0.0
    k = (len(sorted_values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def product_stats(amounts):
    values = sorted(amounts)
    return {
        "n": len(values),
        "sum": sum(values),
        "mean": statistics.fmean(values),
        "stdev": statistics.pstdev(values),
        "p50": percentile(values, 0.50),
        "p90": percentile(values, 0.90),
    }


def top_customers(orders, n):
    spent = {}
    for o in orders:
        spent[o["user"]] = spent.get(o["user"], 0.0) + o["amount"]
    return sorted(spent.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def format_table(rows):
    lines = ["%-10s %6s %10s %8s %8s %8s %8s" % ("sku", "n", "sum", "mean", "stdev", "p50", "p90")]
    for sku, s in rows:
        lines.append("%-10s %6d %10.2f %8.2f %8.2f %8.2f %8.2f"
                     % (sku, s["n"], s["sum"], s["mean"], s["stdev"], s["p50"], s["p90"]))
    return "\n".join(lines)


def sales_report(first_day, days):
    orders = [o for o in db.ORDERS if first_day <= o["day"] < first_day + days]
    stats = {sku: product_stats(a) for sku, a in group_by_product(orders).items()}
    rows = sorted(stats.items(), key=lambda kv: -kv[1]["sum"])
    customers = top_customers(orders, 10)
    text = format_table(rows)
    text += "\n\ntop customers\n" + "\n".join("%6d %10.2f" % c for c in customers)
    return text
