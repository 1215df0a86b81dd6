"""The what-if figure: projected risk per organ and scenario, delivered part solid, projected part dashed,
the interval as a band over the projected part (one row of organ panels per patient)."""
from __future__ import annotations


def plot_projection(frame, path) -> None:
    """Write the figure of a twin.whatif.project frame as a PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from COMPASSLib.atomic import atomic_path

    fig = projection_figure(frame)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def projection_figure(frame, width_per_organ=4.0):
    """The matplotlib figure: one row of organ panels per patient, scenarios in colour."""
    import matplotlib.pyplot as plt

    patients = list(dict.fromkeys(frame["patient"]))
    organs = list(dict.fromkeys(frame["organ"]))
    scenarios = list(dict.fromkeys(frame["scenario"]))
    fig, axes = plt.subplots(len(patients), len(organs), figsize=(width_per_organ * len(organs), 3 * len(patients)),
                             squeeze=False, sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, p in enumerate(patients):
        for j, o in enumerate(organs):
            ax = axes[i][j]
            for n, s in enumerate(scenarios):
                g = frame[(frame["patient"] == p) & (frame["organ"] == o) & (frame["scenario"] == s)]
                if g.empty:
                    continue
                c = colours[n % len(colours)]
                done = g[g["delivered"]]
                ahead = g[~g["delivered"]]
                if n == 0:
                    ax.plot(done["fraction"], done["risk"], "-o", color="black", label="delivered")
                joined = ahead if done.empty else g[g["fraction"] >= done["fraction"].max()]
                ax.plot(joined["fraction"], joined["risk"], "--o", color=c, label=s)
                ax.fill_between(ahead["fraction"], ahead["ci_low"], ahead["ci_high"], color=c, alpha=0.12)
            ax.set_title(f"{p} {o}")
            ax.set_xlabel("fraction")
            ax.set_ylim(0, 1)
            if j == 0:
                ax.set_ylabel("projected risk")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig
