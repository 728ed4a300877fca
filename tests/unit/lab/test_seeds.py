"""What the lab says of a seed's GRPO runs (`rejuv.lab.seeds`)."""

def test_the_lab_says_once_which_starts_the_entropy_screen_flagged(capsys, rejuv_warnings):
    """Every GRPO run of the lab from a collapsed start warned on its own; one line per seed says which, and any
    other warning still shows."""
    from rejuv.errors import collected_warnings, warn
    from rejuv.lab.seeds import say_what_the_screen_flagged

    warned = {}
    for arm, words in (("modsft", ["entropy screen: the start's entropy is 0.128 nats on 8 prompts, below 0.18"]),
                       ("oversft", ["entropy screen: the start's entropy is 0.017 nats on 8 prompts, below 0.18",
                                    "entropy screen: entropy fell from 0.300 to 0.100 nats by step 40"]),
                       ("oversft_fusion", ["rl: something else"])):
        with collected_warnings() as warned[arm]:
            for w in words:
                warn(w)
    say_what_the_screen_flagged(2, warned)
    line = capsys.readouterr().out.strip()
    assert line.endswith("seed 2: the entropy screen (arXiv 2606.18487) flagged a start below the entropy floor: "
                         "modsft (0.128 nats), oversft (0.017 nats); entropy halved early in GRPO: oversft (the "
                         "report judges the screen as a hand-off rule)")
    assert rejuv_warnings == ["rl: something else"]
