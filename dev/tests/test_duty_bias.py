"""dev/duty_bias.py's simulation: the integral it checks estimates against,
and the two results README quotes (seeded, so exact runs, no timing)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import duty_bias  # noqa: E402


class DutyBiasTest(unittest.TestCase):
    def test_busy_integrates_the_phases(self):
        starts, shares = [0.0, 1.0, 3.0, 4.0], [0.5, 1.0, 0.0]
        self.assertAlmostEqual(duty_bias.busy(starts, shares, 0.0, 4.0), 2.5)
        self.assertAlmostEqual(duty_bias.busy(starts, shares, 0.5, 1.5), 0.75)
        self.assertAlmostEqual(duty_bias.busy(starts, shares, 3.2, 3.9), 0.0)

    def test_fixed_gaps_are_unbiased(self):
        r = [duty_bias.estimate(seed, 5.0, 0.0) for seed in range(5)]
        self.assertAlmostEqual(sum(r) / len(r), 1.0, delta=0.01)

    def test_gaps_sized_by_cost_sum_low_when_phases_last_seconds(self):
        r = [duty_bias.estimate(seed, 5.0, duty_bias.MAX_OVERHEAD) for seed in range(5)]
        self.assertLess(max(r), 0.98)
        self.assertGreater(min(r), 0.93)


if __name__ == "__main__":
    unittest.main()
