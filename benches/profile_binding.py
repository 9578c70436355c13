"""A workload for profiling the Python binding: 60 agent runs of 30 turns on LogSaver, then
20,000 get_tuple calls. Profile it with py-spy (pip install py-spy):

    .venv/bin/py-spy record -r 500 --format raw -o profile.txt -- .venv/bin/python benches/profile_binding.py flush
"""

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

from langgraph_bench import agent_graph  # noqa: E402

from logsaver import LogSaver  # noqa: E402


def main() -> None:
    durability = sys.argv[1] if len(sys.argv) > 1 else "flush"
    with tempfile.TemporaryDirectory() as tmp, LogSaver(os.path.join(tmp, "store"), durability=durability) as saver:
        graph = agent_graph(saver, 30)
        started = time.perf_counter()
        for i in range(60):
            graph.invoke({"messages": [{"role": "user", "content": "hi"}], "turn": 0}, {"configurable": {"thread_id": f"t{i}"}})
        config = {"configurable": {"thread_id": "t1", "checkpoint_ns": ""}}
        for _ in range(20000):
            saver.get_tuple(config)
        print(f"elapsed {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
