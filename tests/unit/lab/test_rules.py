"""The lab's α and ρ rules by hand, and the one line they say about their candidates' warnings."""

def test_the_rules_by_hand():
    from rejuv.lab.rules import alpha_by_pass_rate, rho_by_pass_rate

    assert alpha_by_pass_rate({0.5: 0.3, 0.6: 0.5, 0.7: 0.6}, oversft=0.8)[0] == 0.6  # 0.5 keeps < half of 0.8
    assert alpha_by_pass_rate({0.5: 0.4, 0.6: 0.5}, oversft=0.8)[0] == 0.5  # exactly half keeps
    assert alpha_by_pass_rate({0.5: 0.1, 0.9: 0.2}, oversft=0.8)[0] == 0.9  # none keeps half: the largest
    rho, why = rho_by_pass_rate({0.001: 0.4, 0.003: 0.25, 0.01: 0.1}, fused=0.5)
    assert rho == 0.003 and "0.003" in why
    assert rho_by_pass_rate({0.001: 0.1}, fused=0.5) == (0.0, rho_by_pass_rate({0.001: 0.1}, fused=0.5)[1])


def test_the_rules_say_once_what_their_candidates_warned(capsys):
    """The lab printed every rho candidate's reset warnings; a grid is expected to warn: one line says which."""
    from rejuv.errors import collected_warnings, warn
    from rejuv.lab.rules import _say_what_the_candidates_warned

    with collected_warnings() as found:
        warn("apply: the reset covers 12.0% of the model's neurons, above max_reset_share 5.0%")
    assert found == ["apply: the reset covers 12.0% of the model's neurons, above max_reset_share 5.0%"]
    assert capsys.readouterr().err == ""  # collected, not shown
    _say_what_the_candidates_warned(3, {0.0003: [], 0.003: found, 0.01: [*found, "apply: the reset removed more "
                                                                         "calibration accuracy than fusion did"]})
    line = capsys.readouterr().out.strip()
    assert line.endswith("seed 3: the rules' rho candidates warned of a union above max_reset_share at rho 0.003, "
                         "0.01; more calibration accuracy lost than fusion lost at rho 0.01 (each candidate's "
                         "rejuvenation.json holds its warnings)")



