// table_test.cc — lib/table.c on its own: labels found by (file, line,
// name) and added in order, functions beyond max_functions folded into the
// overflow label, entries per (thread slot, label), caller->callee edges,
// the C-function cache, all of them still found after their arrays and hash
// indexes grew, and clear_counts keeping what open frames need.
#include <string>
#include <vector>

#include "lib_internal.h"
#include "pyharness.h"

namespace {

// A table that frees itself; `max_functions` as the config key.
struct Table {
  statsprof__table t;
  explicit Table(uint32_t max_functions = 100000) {
    EXPECT_EQ(statsprof__table_init(&t, max_functions), 0);
  }
  ~Table() { statsprof__table_free(&t); }
  Table(const Table &) = delete;
  Table &operator=(const Table &) = delete;
  statsprof__table *operator->() { return &t; }
  statsprof__table *get() { return &t; }
};

// A slot as threads.c uses one: taken (live) once a thread is bound to it.
uint32_t LiveSlot(statsprof__table *t) {
  uint32_t s = statsprof__table_slot_new(t);
  EXPECT_NE(s, STATSPROF__NONE);
  t->slots[s].state = STATSPROF__SLOT_LIVE;
  return s;
}

std::string Name(int i) { return "f" + std::to_string(i); }

TEST(Table, StartsWithOnlyTheOverflowLabel) {
  Table t(10);
  EXPECT_EQ(t->nlabels, 1u);
  EXPECT_STREQ(t->labels[0].file, "~");
  EXPECT_EQ(t->labels[0].line, 0);
  EXPECT_STREQ(t->labels[0].name, "<statsprof overflow: functions beyond max_functions>");
  EXPECT_EQ(t->nentries, 0u);
  EXPECT_EQ(t->nedges, 0u);
  EXPECT_EQ(t->nslots, 0u);
  EXPECT_EQ(t->overflow_functions, 0u);
  EXPECT_EQ(t->retired, STATSPROF__NONE);
}

TEST(Table, InternFindsALabelByFileLineAndNameAndAddsNewOnesInOrder) {
  Table t;
  EXPECT_EQ(statsprof__table_intern(t.get(), "a.py", 1, "f"), 1u);
  EXPECT_EQ(statsprof__table_intern(t.get(), "a.py", 1, "f"), 1u);
  EXPECT_EQ(statsprof__table_intern(t.get(), "a.py", 2, "f"), 2u);  // another line
  EXPECT_EQ(statsprof__table_intern(t.get(), "b.py", 1, "f"), 3u);  // another file
  EXPECT_EQ(statsprof__table_intern(t.get(), "a.py", 1, "g"), 4u);  // another name
  // Negative lines (a code object without one) are lines like any other.
  EXPECT_EQ(statsprof__table_intern(t.get(), "a.py", -1, "f"), 5u);
  EXPECT_EQ(statsprof__table_intern(t.get(), "a.py", -1, "f"), 5u);
  EXPECT_EQ(t->nlabels, 6u);
  EXPECT_STREQ(t->labels[3].file, "b.py");
  EXPECT_EQ(t->labels[3].line, 1);
  EXPECT_STREQ(t->labels[3].name, "f");
  EXPECT_EQ(t->labels[5].line, -1);
  // The table keeps its own copies: the caller's strings may go.
  std::string file = "c.py", name = "h";
  uint32_t h = statsprof__table_intern(t.get(), file.c_str(), 7, name.c_str());
  file.assign("xxxx");
  name.assign("y");
  EXPECT_STREQ(t->labels[h].file, "c.py");
  EXPECT_STREQ(t->labels[h].name, "h");
  EXPECT_EQ(statsprof__table_intern(t.get(), "c.py", 7, "h"), h);
  // Consecutive labels of one file share its string.
  uint32_t h2 = statsprof__table_intern(t.get(), "c.py", 8, "h2");
  EXPECT_EQ(t->labels[h2].file, t->labels[h].file);
}

TEST(Table, LabelsAreFoundAgainAfterTheArrayAndTheIndexGrew) {
  // 5000 labels: the array (64 at first) and the index (256 slots) double
  // several times, and a string chunk (16 KiB) fills.
  Table t;
  const int n = 5000;
  for (int i = 0; i < n; i++)
    ASSERT_EQ(statsprof__table_intern(t.get(), i % 2 ? "odd.py" : "even.py", i, Name(i).c_str()), uint32_t(i + 1));
  EXPECT_EQ(t->nlabels, uint32_t(n + 1));
  for (int i = 0; i < n; i++) {
    ASSERT_EQ(statsprof__table_intern(t.get(), i % 2 ? "odd.py" : "even.py", i, Name(i).c_str()), uint32_t(i + 1));
    ASSERT_STREQ(t->labels[i + 1].name, Name(i).c_str());
    ASSERT_EQ(t->labels[i + 1].line, i);
  }
  EXPECT_EQ(t->nlabels, uint32_t(n + 1));
  // A name longer than a string chunk gets a chunk of its own.
  std::string longname(40000, 'n');
  uint32_t l = statsprof__table_intern(t.get(), "long.py", 1, longname.c_str());
  EXPECT_EQ(l, uint32_t(n + 1));
  EXPECT_EQ(std::string(t->labels[l].name), longname);
  EXPECT_STREQ(t->labels[n].name, Name(n - 1).c_str());  // older strings stay put
}

TEST(Table, FunctionsBeyondMaxFunctionsFoldIntoTheOverflowLabel) {
  Table t(3);
  EXPECT_EQ(statsprof__table_intern(t.get(), "a.py", 1, "f1"), 1u);
  EXPECT_EQ(statsprof__table_intern(t.get(), "a.py", 2, "f2"), 2u);
  EXPECT_EQ(statsprof__table_intern(t.get(), "a.py", 3, "f3"), 3u);
  EXPECT_EQ(statsprof__table_intern(t.get(), "a.py", 4, "f4"), 0u);
  EXPECT_EQ(t->overflow_functions, 1u);
  // Known functions are still found; only new ones fold.
  EXPECT_EQ(statsprof__table_intern(t.get(), "a.py", 2, "f2"), 2u);
  EXPECT_EQ(t->overflow_functions, 1u);
  // Each fold counts: the hook interns a code object once and keeps label 0
  // in its co_extra, so this counts folded code objects.
  EXPECT_EQ(statsprof__table_intern(t.get(), "a.py", 5, "f5"), 0u);
  EXPECT_EQ(statsprof__table_intern(t.get(), "a.py", 4, "f4"), 0u);
  EXPECT_EQ(t->overflow_functions, 3u);
  EXPECT_EQ(t->nlabels, 4u);
}

TEST(Table, ANewSlotIsTheFirstFreeOneOrAnAddedOne) {
  Table t;
  uint32_t s0 = statsprof__table_slot_new(t.get());
  EXPECT_EQ(s0, 0u);
  EXPECT_EQ(t->slots[s0].state, STATSPROF__SLOT_FREE);
  EXPECT_EQ(t->slots[s0].nlocal, 0u);
  // Not taken yet: asked again, the same slot.
  EXPECT_EQ(statsprof__table_slot_new(t.get()), s0);
  t->slots[s0].state = STATSPROF__SLOT_LIVE;
  std::vector<uint32_t> live;
  for (int i = 0; i < 100; i++) live.push_back(LiveSlot(t.get()));  // past 64: the array grew
  for (int i = 0; i < 100; i++) ASSERT_EQ(live[i], uint32_t(i + 1));
  EXPECT_EQ(t->nslots, 101u);
  EXPECT_EQ(t->slots[0].state, STATSPROF__SLOT_LIVE);  // kept across growth
  // A freed slot is reused before the array grows.
  t->slots[42].state = STATSPROF__SLOT_FREE;
  EXPECT_EQ(statsprof__table_slot_new(t.get()), 42u);
  EXPECT_EQ(t->nslots, 101u);
}

TEST(Table, EntriesArePerSlotAndLabelAndAFreedSlotKeepsItsOwn) {
  Table t;
  uint32_t f = statsprof__table_intern(t.get(), "a.py", 1, "f");
  uint32_t g = statsprof__table_intern(t.get(), "a.py", 2, "g");
  uint32_t s0 = LiveSlot(t.get()), s1 = LiveSlot(t.get());
  uint32_t f0 = statsprof__table_entry(t.get(), s0, f);
  EXPECT_EQ(statsprof__table_entry(t.get(), s0, f), f0);
  uint32_t g0 = statsprof__table_entry(t.get(), s0, g);
  uint32_t f1 = statsprof__table_entry(t.get(), s1, f);
  EXPECT_EQ(f0, 0u);
  EXPECT_EQ(g0, 1u);
  EXPECT_EQ(f1, 2u);
  EXPECT_EQ(t->nentries, 3u);
  const statsprof__entry &e = t->entries[f1];
  EXPECT_EQ(e.label, f);
  EXPECT_EQ(e.slot, s1);
  EXPECT_EQ(e.level, 0u);
  EXPECT_EQ(e.last_edge, STATSPROF__NONE);
  EXPECT_EQ(e.c.callcount + e.c.reccallcount + e.c.tt + e.c.it, 0u);
  // A thread ends, its slot is freed, a new thread takes it: same entries.
  t->slots[s1].state = STATSPROF__SLOT_FREE;
  EXPECT_EQ(statsprof__table_slot_new(t.get()), s1);
  EXPECT_EQ(statsprof__table_entry(t.get(), s1, f), f1);
  EXPECT_EQ(t->nentries, 3u);
}

TEST(Table, EntriesAreFoundAgainAfterTheSlotMapAndTheEntriesGrew) {
  // 600 labels: a slot's label map (256 at first) and the entries grow.
  Table t;
  uint32_t s = LiveSlot(t.get());
  std::vector<uint32_t> labels, entries;
  for (int i = 0; i < 600; i++) labels.push_back(statsprof__table_intern(t.get(), "m.py", i, Name(i).c_str()));
  // In reverse: the first entry asked for has the highest label.
  for (int i = 599; i >= 0; i--) entries.push_back(statsprof__table_entry(t.get(), s, labels[i]));
  for (int i = 599, k = 0; i >= 0; i--, k++) {
    ASSERT_EQ(entries[k], uint32_t(k));
    ASSERT_EQ(statsprof__table_entry(t.get(), s, labels[i]), entries[k]);
    ASSERT_EQ(t->entries[entries[k]].label, labels[i]);
  }
  EXPECT_EQ(t->nentries, 600u);
  // The overflow label has entries like any other.
  uint32_t o = statsprof__table_entry(t.get(), s, 0);
  EXPECT_EQ(o, 600u);
  EXPECT_EQ(t->entries[o].label, 0u);
}

TEST(Table, EdgesAreFoundByCallerAndCalleeInThatOrder) {
  Table t;
  uint32_t s = LiveSlot(t.get());
  uint32_t a = statsprof__table_entry(t.get(), s, statsprof__table_intern(t.get(), "a.py", 1, "a"));
  uint32_t b = statsprof__table_entry(t.get(), s, statsprof__table_intern(t.get(), "a.py", 2, "b"));
  EXPECT_EQ(statsprof__table_edge(t.get(), a, b), 0u);
  EXPECT_EQ(statsprof__table_edge(t.get(), a, b), 0u);
  EXPECT_EQ(statsprof__table_edge(t.get(), b, a), 1u);  // b calls a: another edge
  EXPECT_EQ(statsprof__table_edge(t.get(), a, a), 2u);  // recursion
  EXPECT_EQ(t->nedges, 3u);
  EXPECT_EQ(t->edges[1].caller, b);
  EXPECT_EQ(t->edges[1].callee, a);
  EXPECT_EQ(t->edges[2].caller, a);
  EXPECT_EQ(t->edges[2].callee, a);
  EXPECT_EQ(t->edges[0].level, 0u);
  EXPECT_EQ(t->edges[0].c.callcount + t->edges[0].c.tt, 0u);
}

TEST(Table, EdgesAreFoundAgainAfterTheArrayAndTheIndexGrew) {
  // 70 x 70 edges: the index (1024 slots) and the array (64) double often;
  // entry numbers that differ only in their high or low half both count.
  Table t;
  const uint32_t n = 70;
  std::vector<uint32_t> e;
  uint32_t s = LiveSlot(t.get());
  for (uint32_t i = 0; i < n; i++)
    e.push_back(statsprof__table_entry(t.get(), s, statsprof__table_intern(t.get(), "e.py", int(i), "f")));
  uint32_t k = 0;
  for (uint32_t i = 0; i < n; i++)
    for (uint32_t j = 0; j < n; j++) ASSERT_EQ(statsprof__table_edge(t.get(), e[i], e[j]), k++);
  EXPECT_EQ(t->nedges, n * n);
  k = 0;
  for (uint32_t i = 0; i < n; i++)
    for (uint32_t j = 0; j < n; j++, k++) {
      ASSERT_EQ(statsprof__table_edge(t.get(), e[i], e[j]), k);
      ASSERT_EQ(t->edges[k].caller, e[i]);
      ASSERT_EQ(t->edges[k].callee, e[j]);
    }
  EXPECT_EQ(t->nedges, n * n);
  // Keys beyond 16 bits on either side (the hash mixes all 64 bits).
  EXPECT_EQ(statsprof__table_edge(t.get(), 1u << 20, 3), n * n);
  EXPECT_EQ(statsprof__table_edge(t.get(), 3, 1u << 20), n * n + 1);
  EXPECT_EQ(statsprof__table_edge(t.get(), 1u << 20, 3), n * n);
}

TEST(Table, CFunctionsAreFoundByTheirMethodDefBeforeAndAfterGrowth) {
  Table t;
  static PyMethodDef defs[2000];
  EXPECT_EQ(statsprof__table_cfunc_find(t.get(), &defs[0]), STATSPROF__NONE);
  ASSERT_EQ(statsprof__table_cfunc_add(t.get(), &defs[0], 7), 0);
  EXPECT_EQ(statsprof__table_cfunc_find(t.get(), &defs[0]), 7u);
  EXPECT_EQ(statsprof__table_cfunc_find(t.get(), &defs[1]), STATSPROF__NONE);
  // 2000 of them: the cache (256 slots) doubles several times.
  for (uint32_t i = 1; i < 2000; i++) ASSERT_EQ(statsprof__table_cfunc_add(t.get(), &defs[i], 1000 + i), 0);
  EXPECT_EQ(t->ncfuncs, 2000u);
  EXPECT_EQ(statsprof__table_cfunc_find(t.get(), &defs[0]), 7u);
  for (uint32_t i = 1; i < 2000; i++) ASSERT_EQ(statsprof__table_cfunc_find(t.get(), &defs[i]), 1000 + i);
  static PyMethodDef other;
  EXPECT_EQ(statsprof__table_cfunc_find(t.get(), &other), STATSPROF__NONE);
}

TEST(Table, ClearCountsZeroesCountersAndKeepsLabelsEntriesLevelsAndOverflow) {
  Table t(1);
  uint32_t s = LiveSlot(t.get());
  uint32_t f = statsprof__table_intern(t.get(), "a.py", 1, "f");
  EXPECT_EQ(statsprof__table_intern(t.get(), "a.py", 2, "g"), 0u);  // folded
  uint32_t ef = statsprof__table_entry(t.get(), s, f);
  uint32_t eo = statsprof__table_entry(t.get(), s, 0);
  uint32_t edge = statsprof__table_edge(t.get(), ef, eo);
  t->entries[ef].c = {5, 2, 100, 80};
  t->entries[ef].level = 2;  // f is on the stack twice right now
  t->entries[eo].c = {1, 0, 9, 9};
  t->edges[edge].c = {3, 1, 50, 40};
  t->edges[edge].level = 1;
  statsprof__table_clear_counts(t.get());
  for (uint32_t e : {ef, eo}) {
    const statsprof__counters &c = t->entries[e].c;
    EXPECT_EQ(c.callcount + c.reccallcount + c.tt + c.it, 0u) << e;
  }
  const statsprof__counters &c = t->edges[edge].c;
  EXPECT_EQ(c.callcount + c.reccallcount + c.tt + c.it, 0u);
  // Frames open now still return into these entries and edges.
  EXPECT_EQ(t->entries[ef].level, 2u);
  EXPECT_EQ(t->edges[edge].level, 1u);
  EXPECT_EQ(t->overflow_functions, 1u);
  EXPECT_EQ(t->nlabels, 2u);
  EXPECT_EQ(statsprof__table_entry(t.get(), s, f), ef);
  EXPECT_EQ(statsprof__table_edge(t.get(), ef, eo), edge);
}

TEST(Table, StringsOutliveTheTableWhileASnapshotHoldsThem) {
  // Snapshots point at the table's strings and may outlive the profiler.
  statsprof__strings *held;
  const char *name;
  {
    Table t;
    name = t->labels[statsprof__table_intern(t.get(), "a.py", 1, "kept")].name;
    held = t->strings;
    statsprof__strings_ref(held);
  }
  EXPECT_STREQ(name, "kept");
  statsprof__strings_unref(held);
}

}  // namespace
