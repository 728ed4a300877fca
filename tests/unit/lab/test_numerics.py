"""The lab's CPU numerics: the thread count fixed, and the code path and kernel-relevant extensions recorded."""

import torch

from rejuv.lab.numerics import ISA_FLAGS, cpu_isa, pin_cpu_numerics


def test_the_numerics_in_effect_are_recorded():
    before = torch.get_num_threads()
    try:
        found = pin_cpu_numerics(1)
        assert found["threads"] == 1 and found["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
        isa = cpu_isa()
        assert found["cpu_isa"] == isa and (isa is None or set(isa) <= set(ISA_FLAGS))
    finally:
        torch.set_num_threads(before)
