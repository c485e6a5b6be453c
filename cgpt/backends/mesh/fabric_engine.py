"""The cycle loop behind `Fabric.run`: a `Program` compiled to flat arrays, advanced one cycle at a time.

Every flow is a tree of nodes: its source (the PE's send), the routers it visits (one input queue each) and
its deliveries (PE memory). Only two counters per node are state: wavelets in (`cin`) and out (`cout`).
Wavelets are FIFO within a flow, so a node's next wavelet is number `cout`, the queue holds `cin - cout`,
and a child's credit use is `cout[parent] - cout[child]` (queued plus in flight). Per cycle, every
operation is a numpy expression over the nodes and edges of the flows active now; cycles in which nothing
can move are skipped to the next compute end or flow start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from cgpt.backends.mesh.fabric_params import FabricParams
from cgpt.ir.diagnostics import CompileError, RunError

if TYPE_CHECKING:
    from cgpt.backends.mesh.fabric import ComputeGroup, FlowGroup, Program, RouteTree

EAST, WEST, NORTH, SOUTH, RAMP_UP, RAMP_DOWN = range(6)
NEVER = np.iinfo(np.int64).max // 4
_SRC, _ROUTER, _SINK = 0, 1, 2
_E = np.zeros(0, np.int64)


def ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenated aranges [s, s + n) for each (s, n)."""
    lens = np.asarray(lens, dtype=np.int64)
    shift = np.repeat(np.asarray(starts, dtype=np.int64) - (np.cumsum(lens) - lens), lens)
    return shift + np.arange(int(lens.sum()), dtype=np.int64)


def _csr(rows: np.ndarray, cols: np.ndarray, nrows: int) -> tuple[np.ndarray, np.ndarray]:
    """Row pointer and column indices of the pairs (rows, cols), grouped by row."""
    ptr = np.zeros(nrows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=nrows), out=ptr[1:])
    return ptr, cols[np.argsort(rows, kind="stable")]


def _unique(a: np.ndarray) -> np.ndarray:
    return np.unique(a) if len(a) > 1 else a


def _offsets(lens: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64) if len(lens) else _E


def _tree_template(tree: RouteTree, ramp: int, hop: int) -> dict[str, np.ndarray]:
    """Nodes (0 source, 1.. routers, then deliveries) and parent-sorted edges of one flow of `tree`."""
    r = len(tree.dx)
    dl = np.flatnonzero(tree.deliver)
    kids = np.arange(1, r)
    par = tree.parent[1:]
    sx, sy = tree.dx[kids] - tree.dx[par], tree.dy[kids] - tree.dy[par]
    port = np.select([sx == 1, sx == -1, sy == -1], [EAST, WEST, NORTH], default=SOUTH)
    e_par = np.concatenate([[0], 1 + par, 1 + dl])
    order = np.argsort(e_par, kind="stable")
    return {
        "par": e_par[order],
        "child": np.concatenate([[1], 1 + kids, 1 + r + np.arange(len(dl))])[order],
        "at": np.concatenate([[0], par, dl])[order],  # the router whose output link the edge uses
        "port": np.concatenate([[RAMP_UP], port, np.full(len(dl), RAMP_DOWN)])[order],
        "lat": np.concatenate([[ramp], np.full(len(kids), hop), np.full(len(dl), ramp)])[order],
        "node_at": np.concatenate([[0], np.arange(r), dl]),
        "kind": np.concatenate([[_SRC], np.full(r, _ROUTER), np.full(len(dl), _SINK)]),
    }


def simulate(w: int, h: int, params: FabricParams, program: Program, max_cycles: int) -> tuple:
    """Run `program` on a w x h fabric: (cycles, final buffers, link busy (h, w, 6), finish per name)."""
    return _Simulation(w, h, params, program).run(max_cycles)


class _Simulation:
    def __init__(self, w: int, h: int, params: FabricParams, program: Program) -> None:
        self.w, self.h, self.hw, self.p = w, h, w * h, params
        self._memory(program.buffers)
        names = sorted({g.name for g in program.flows} | {c.name for c in program.computes})
        self.name_id = {n: i for i, n in enumerate(names)}
        self._flows([g for g in program.flows if g.length > 0 and len(g.src) > 0])
        self._events(list(program.computes))
        self._dependencies()

    # ---- compilation -------------------------------------------------------------------------------
    def _memory(self, buffers: Mapping[str, np.ndarray]) -> None:
        self.base, self.words, off = {}, {}, 0
        for name, arr in buffers.items():
            if arr.ndim != 3 or arr.shape[:2] != (self.h, self.w):
                raise RunError(
                    f"buffer '{name}' has shape {arr.shape}; this fabric needs ({self.h}, {self.w}, words)"
                )
            self.base[name], self.words[name] = off, arr.shape[2]
            off += arr.size
        self.mem = np.zeros(off, dtype=np.float64)
        self.views = {}
        for name, arr in buffers.items():
            self.views[name] = self.mem[self.base[name] : self.base[name] + arr.size].reshape(arr.shape)
            self.views[name][...] = arr

    def _addr(self, buf: str, pe: np.ndarray, offset: int, length: int, group: str) -> np.ndarray:
        if buf not in self.base:
            raise CompileError(
                f"flow group '{group}' names buffer '{buf}', which the program does not declare"
            )
        if offset + length > self.words[buf]:
            raise CompileError(
                f"flow group '{group}' moves {offset + length} words; '{buf}' has {self.words[buf]}"
            )
        return self.base[buf] + pe * self.words[buf] + offset

    def _flows(self, groups: list[FlowGroup]) -> None:
        """Each group's route template, tiled over its sources: node, edge and flow arrays."""
        nodes: dict[str, list] = {k: [] for k in ("kind", "flow", "pe", "dst", "evkey", "accum")}
        edges: dict[str, list] = {k: [] for k in ("par", "child", "link", "lat", "flow")}
        flows: dict[str, list] = {
            k: [] for k in ("group", "pe", "n", "src", "node_lo", "node_n", "addr", "sinks")
        }
        n_nodes = n_flows = 0
        for gi, g in enumerate(groups):
            tpl = _tree_template(g.tree, self.p.ramp_latency_cycles, self.p.hop_latency_cycles)
            src = np.asarray(g.src, dtype=np.int64).reshape(-1, 2)
            nf, per = len(src), len(tpl["kind"])
            nx = src[:, :1] + g.tree.dx[tpl["node_at"]][None, :]
            ny = src[:, 1:] + g.tree.dy[tpl["node_at"]][None, :]
            if np.any((nx < 0) | (nx >= self.w) | (ny < 0) | (ny >= self.h)):
                raise CompileError(f"flow group '{g.name}' routes off the {self.w} x {self.h} fabric")
            node_pe = ny * self.w + nx
            base = n_nodes + per * np.arange(nf)[:, None]
            fid = n_flows + np.arange(nf)
            lx = src[:, :1] + g.tree.dx[tpl["at"]][None, :]
            ly = src[:, 1:] + g.tree.dy[tpl["at"]][None, :]
            edges["par"].append((base + tpl["par"]).ravel())
            edges["child"].append((base + tpl["child"]).ravel())
            edges["link"].append(((ly * self.w + lx) * 6 + tpl["port"]).ravel())
            edges["lat"].append(np.tile(tpl["lat"], nf))
            edges["flow"].append(np.repeat(fid, len(tpl["par"])))
            sink = tpl["kind"] == _SINK
            dst = self._addr(g.dst_buf, node_pe[:, sink], g.dst_offset, g.length, g.name)
            nodes["kind"].append(np.tile(tpl["kind"], nf))
            nodes["flow"].append(np.repeat(fid, per))
            nodes["pe"].append(node_pe.ravel())
            dst_all = np.full(node_pe.shape, -1, dtype=np.int64)
            dst_all[:, sink] = dst  # memory address of wavelet 0 at each delivery; -1 elsewhere
            nodes["dst"].append(dst_all.ravel())
            nodes["evkey"].append(
                np.where(sink[None, :], self.name_id[g.name] * self.hw + node_pe, -1).ravel()
            )
            nodes["accum"].append(np.full(nf * per, g.accumulate))
            src_pe = src[:, 1] * self.w + src[:, 0]
            for key, val in (
                ("group", np.full(nf, gi)),
                ("pe", src_pe),
                ("n", np.full(nf, g.length)),
                ("src", base[:, 0]),
                ("node_lo", base[:, 0]),
                ("node_n", np.full(nf, per)),
                ("addr", self._addr(g.src_buf, src_pe, g.src_offset, g.length, g.name)),
                ("sinks", np.full(nf, int(sink.sum()))),
            ):
                flows[key].append(val)
            n_nodes += nf * per
            n_flows += nf

        def cat(parts: list, dt: type = np.int64) -> np.ndarray:
            return np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)

        self.groups = groups
        self.n_kind, self.n_flow, self.n_pe = cat(nodes["kind"]), cat(nodes["flow"]), cat(nodes["pe"])
        self.n_dst, self.n_evkey, self.n_accum = (
            cat(nodes["dst"]),
            cat(nodes["evkey"]),
            cat(nodes["accum"], bool),
        )
        self.e_par, self.e_child, self.e_link = cat(edges["par"]), cat(edges["child"]), cat(edges["link"])
        self.e_lat, self.e_flow = cat(edges["lat"]), cat(edges["flow"])
        self.f_group, self.f_pe, self.f_n = cat(flows["group"]), cat(flows["pe"]), cat(flows["n"])
        self.f_src, self.f_addr, self.f_sinks = cat(flows["src"]), cat(flows["addr"]), cat(flows["sinks"])
        self.f_node_lo, self.f_node_n = cat(flows["node_lo"]), cat(flows["node_n"])
        self.f_val = _offsets(self.f_n)
        self.f_edge_n = np.bincount(self.e_flow, minlength=len(self.f_n)).astype(np.int64)
        self.f_edge_lo = _offsets(self.f_edge_n)
        self.e_depth = np.where(self.n_kind[self.e_child] == _ROUTER, self.p.queue_depth, NEVER)

    def _events(self, computes: list[ComputeGroup]) -> None:
        """One event per (group name, PE): all deliveries there landed, or the compute there finished."""
        sinks = np.flatnonzero(self.n_kind == _SINK)
        self.computes = computes
        pes = [np.asarray(c.pes, dtype=np.int64).reshape(-1, 2) for c in computes]
        self.c_group = np.concatenate([np.full(len(q), i) for i, q in enumerate(pes)] + [_E]).astype(np.int64)
        self.c_pe = np.concatenate([q[:, 1] * self.w + q[:, 0] for q in pes] + [_E]).astype(np.int64)
        self.c_cycles = np.array([c.cycles for c in computes] + [0], dtype=np.int64)[self.c_group]
        name = np.array([self.name_id[c.name] for c in computes] + [0], dtype=np.int64)
        keys, inv = np.unique(
            np.concatenate([self.n_evkey[sinks], name[self.c_group] * self.hw + self.c_pe]),
            return_inverse=True,
        )
        ns = len(sinks)
        self.ev_keys = keys
        self.sink_ev = np.full(len(self.n_kind), -1, dtype=np.int64)
        self.sink_ev[sinks] = inv[:ns]
        self.c_ev = inv[ns:]
        need = np.bincount(inv[:ns], weights=self.f_n[self.n_flow[sinks]], minlength=len(keys))
        self.ev_need = np.rint(need).astype(np.int64) + np.bincount(self.c_ev, minlength=len(keys))
        self.ev_accum = np.bincount(inv[:ns], weights=self.n_accum[sinks], minlength=len(keys)) > 0
        self.ev_time = np.full(len(keys), NEVER, dtype=np.int64)
        self.ev_sink_ptr, self.ev_sinks = _csr(inv[:ns], sinks, len(keys))

    def _lookup(self, names: Sequence[str], pe: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, event) for each event of `names` at the PEs `pe` that exists; absent ones are met."""
        rows, evs = [_E], [_E]
        for name in names:
            if name not in self.name_id or not len(self.ev_keys):
                continue
            key = self.name_id[name] * self.hw + pe
            at = np.minimum(np.searchsorted(self.ev_keys, key), len(self.ev_keys) - 1)
            hit = np.flatnonzero(self.ev_keys[at] == key)
            rows.append(hit)
            evs.append(at[hit])
        return np.concatenate(rows), np.concatenate(evs)

    def _dependencies(self) -> None:
        nf, nc = len(self.f_n), len(self.c_pe)
        rows, evs, srows, sevs = [_E], [_E], [_E], [_E]
        for gi, g in enumerate(self.groups):
            idx = np.flatnonzero(self.f_group == gi)
            r, e = self._lookup(g.after, self.f_pe[idx])
            rows, evs = rows + [idx[r]], evs + [e]
            r, e = self._lookup(g.stream_after, self.f_pe[idx])
            srows, sevs = srows + [idx[r]], sevs + [e]
        for ci, c in enumerate(self.computes):
            idx = np.flatnonzero(self.c_group == ci)
            r, e = self._lookup(c.after, self.c_pe[idx])
            rows, evs = rows + [nf + idx[r]], evs + [e]
        rows, evs = np.concatenate(rows), np.concatenate(evs)
        self.task_left = np.bincount(rows, minlength=nf + nc).astype(np.int64)
        self.task_start = np.zeros(nf + nc, dtype=np.int64)
        self.ev_dep_ptr, self.ev_dep = _csr(evs, rows, len(self.ev_keys))
        self.ev_dep_n = np.diff(self.ev_dep_ptr)
        # stream gates: flow -> the deliveries at its PE whose wavelet j must land before it sends wavelet j
        srows, sevs = np.concatenate(srows), np.concatenate(sevs)
        n = np.diff(self.ev_sink_ptr)[sevs]
        sinks = self.ev_sinks[ranges(self.ev_sink_ptr[sevs], n)]
        self.f_gate_ptr, self.f_gate = _csr(np.repeat(srows, n), sinks, nf)
        self.f_gate_n = np.diff(self.f_gate_ptr)

    # ---- the cycle loop ----------------------------------------------------------------------------
    def run(self, max_cycles: int) -> tuple:
        nn, nf, nc = len(self.n_kind), len(self.f_n), len(self.c_pe)
        self.ring = max(self.p.ramp_latency_cycles, self.p.hop_latency_cycles) + 1
        self.latencies = sorted({self.p.ramp_latency_cycles, self.p.hop_latency_cycles})
        self.slots: list[list[np.ndarray]] = [[] for _ in range(self.ring)]  # nodes landing at t % ring
        self.in_flight = 0
        self.cin = np.zeros(nn, np.int64)
        self.cout = np.zeros(nn, np.int64)
        self.last_arr = np.full(nn, -1, np.int64)
        n_links = self.hw * 6
        self.rr = np.full(n_links, -1, np.int64)
        self.best = np.full(n_links, NEVER, np.int64)
        self.busy = np.zeros(n_links, np.int64)
        self.vals = np.zeros(int(self.f_n.sum()), np.float64)
        self.f_state = np.zeros(nf, np.int8)  # 0 waiting, 1 start known, 2 active, 3 done
        self.f_left = self.f_sinks.copy()
        self.c_end = np.full(nc, NEVER, np.int64)
        self.pool_f, self.pool_t = _E, _E  # released flows waiting for their start cycle
        self.next_act = self.next_comp = NEVER
        self.done_f = self.done_c = 0
        self._set_active(_E)
        self._release(np.flatnonzero(self.task_left == 0))
        t = 0
        while self.done_f < nf or self.done_c < nc:
            arrived = self._arrivals(t)
            self._computes(t)
            self._activate(t)
            moved = self._moves(t)
            if moved or arrived or self.in_flight:
                t += 1
            elif min(self.next_act, self.next_comp) < NEVER and (self.done_f < nf or self.done_c < nc):
                t = max(t + 1, min(self.next_act, self.next_comp))
            elif self.done_f < nf or self.done_c < nc:
                raise CompileError(
                    f"fabric program deadlocked at cycle {t}: a flow or compute waits on an "
                    "event that never happens (check `after` and `stream_after` names)"
                )
            if t > max_cycles:
                raise RunError(f"fabric program still running after {max_cycles} cycles")
        met = self.ev_time < NEVER
        last = np.full(len(self.name_id), -1, np.int64)
        np.maximum.at(last, self.ev_keys[met] // self.hw, self.ev_time[met])
        finished = {name: int(last[i]) for name, i in self.name_id.items() if last[i] >= 0}
        cycles = int(self.ev_time[met].max()) if met.any() else 0
        busy = self.busy.reshape(self.h, self.w, 6)
        return cycles, {k: v.copy() for k, v in self.views.items()}, busy, finished

    def _release(self, tasks: np.ndarray) -> None:
        """Tasks whose dependencies are all met: flows learn their start, computes their end."""
        nf = len(self.f_n)
        fl = tasks[tasks < nf]
        if len(fl):
            self.f_state[fl] = 1
            self.pool_f = np.concatenate([self.pool_f, fl])
            self.pool_t = np.concatenate([self.pool_t, self.task_start[fl]])
            self.next_act = min(self.next_act, int(self.task_start[fl].min()))
        cp = tasks[tasks >= nf] - nf
        if len(cp):
            self.c_end[cp] = self.task_start[nf + cp] + self.c_cycles[cp]
            self.next_comp = min(self.next_comp, int(self.c_end[cp].min()))

    def _complete(self, evs: np.ndarray, times: np.ndarray) -> None:
        """Events met at `times`: dependents' starts move up to them, and tasks with none left go."""
        if not len(evs):
            return
        self.ev_time[evs] = times
        n = self.ev_dep_n[evs]
        deps = self.ev_dep[ranges(self.ev_dep_ptr[evs], n)]
        if len(deps):
            np.maximum.at(self.task_start, deps, np.repeat(times, n))
            np.subtract.at(self.task_left, deps, 1)
            deps = np.unique(deps)
            self._release(deps[self.task_left[deps] == 0])

    def _computes(self, t: int) -> None:
        while self.next_comp <= t:
            now = np.flatnonzero(self.c_end <= t)
            for gi in np.unique(self.c_group[now]):
                pe = self.c_pe[now[self.c_group[now] == gi]]
                self.computes[gi].fn(self.views, pe // self.w, pe % self.w)
            self.c_end[now] = NEVER
            self.next_comp = int(self.c_end.min()) if len(self.c_end) else NEVER
            self.done_c += len(now)
            np.subtract.at(self.ev_need, self.c_ev[now], 1)
            ev = _unique(self.c_ev[now][self.ev_need[self.c_ev[now]] == 0])
            self._complete(ev, np.full(len(ev), t, np.int64))

    def _activate(self, t: int) -> None:
        """Flows whose start cycle has come join the active arrays; finished ones are pruned now and then."""
        if self.dead > max(64, len(self.a_flows) // 4):
            self._set_active(self.a_flows[self.f_state[self.a_flows] == 2])
        if self.next_act > t:
            return
        due = self.pool_t <= t
        go = self.pool_f[due]
        self.pool_f, self.pool_t = self.pool_f[~due], self.pool_t[~due]
        self.next_act = int(self.pool_t.min()) if len(self.pool_t) else NEVER
        self.f_state[go] = 2
        plain = go[self.f_gate_n[go] == 0]
        self.cin[self.f_src[plain]] = self.f_n[plain]  # ungated sources have every wavelet ready
        self._set_active(go, append=True)

    def _set_active(self, fl: np.ndarray, append: bool = False) -> None:
        e = ranges(self.f_edge_lo[fl], self.f_edge_n[fl])
        par = self.e_par[e]
        start = np.flatnonzero(np.concatenate([[True], par[1:] != par[:-1]])) if len(e) else _E
        gn = self.f_gate_n[fl]
        gated = gn > 0
        new = {
            "a_flows": fl,
            "a_par": par,
            "a_child": self.e_child[e],
            "a_link": self.e_link[e],
            "a_lat": self.e_lat[e],
            "a_flow": self.e_flow[e],
            "a_depth": self.e_depth[e],
            "s_start": start,
            "s_len": np.diff(np.concatenate([start, [len(e)]])).astype(np.int64),
            "s_par": par[start],
            "g_src": self.f_src[fl[gated]],
            "g_n": self.f_n[fl[gated]],
            "g_sinks": self.f_gate[ranges(self.f_gate_ptr[fl[gated]], gn[gated])],
            "g_seg": _offsets(gn[gated]),
        }
        if append:
            new["s_start"] = new["s_start"] + len(self.a_par)
            new["g_seg"] = new["g_seg"] + len(self.g_sinks)
            for k, v in new.items():
                setattr(self, k, np.concatenate([getattr(self, k), v]))
        else:
            for k, v in new.items():
                setattr(self, k, v)
            self.dead = 0
        self.unicast = len(self.s_start) == len(self.a_par)

    def _arrivals(self, t: int) -> bool:
        """Land the wavelets due at `t`: into router queues, or into PE memory at a delivery."""
        slot = self.slots[t % self.ring]
        if not slot:
            return False
        a = np.concatenate(slot)
        slot.clear()
        self.in_flight -= len(a)
        self.cin[a] += 1
        self.last_arr[a] = t
        s = a[self.n_kind[a] == _SINK]
        if not len(s):
            return True
        f = self.n_flow[s]
        j = self.cin[s] - 1
        v = self.vals[self.f_val[f] + j]
        addr = self.n_dst[s] + j
        acc = self.n_accum[s]
        np.add.at(self.mem, addr[acc], v[acc])
        self.mem[addr[~acc]] = v[~acc]
        ev = self.sink_ev[s]
        np.subtract.at(self.ev_need, ev, 1)
        ev = _unique(ev[self.ev_need[ev] == 0])
        self._complete(ev, t + self.ev_accum[ev].astype(np.int64))  # an accumulated wavelet is one add later
        full = f[self.cin[s] == self.f_n[f]]
        if len(full):
            np.subtract.at(self.f_left, full, 1)
            fin = _unique(full[self.f_left[full] == 0])
            self.f_state[fin] = 3
            self.done_f += len(fin)
            self.dead += len(fin)
        return True

    def _moves(self, t: int) -> bool:
        """Advance every wavelet whose output links it wins and whose next queues have a credit."""
        if len(self.g_src):  # a gated source may send wavelet j once j landed at its PE a cycle ago
            s = self.g_sinks
            gate = np.minimum.reduceat(self.cin[s] - (self.last_arr[s] == t), self.g_seg)
            self.cin[self.g_src] = np.minimum(self.g_n, gate)
        par = self.s_par
        cand = np.flatnonzero(self.cin[par] > self.cout[par])
        if not len(cand):
            return False
        lens = None if self.unicast else self.s_len[cand]
        e = cand if lens is None else ranges(self.s_start[cand], lens)
        room = (self.cout[self.a_par[e]] - self.cout[self.a_child[e]]) < self.a_depth[e]
        if lens is not None:
            room = np.repeat(np.logical_and.reduceat(room, _offsets(lens)), lens)
        want = np.flatnonzero(room)
        if not len(want):
            return False
        we = e[want]
        wl = self.a_link[we]
        key = (self.a_flow[we] - self.rr[wl] - 1) % max(len(self.f_n), 1)  # round-robin per output link
        np.minimum.at(self.best, wl, key)
        win = key == self.best[wl]
        self.best[wl] = NEVER
        if lens is None:
            go = we[win]
        else:  # a multicast wavelet moves only if it won every one of its output links
            granted = np.zeros(len(e), bool)
            granted[want[win]] = True
            go = e[np.repeat(np.logical_and.reduceat(granted, _offsets(lens)), lens)]
        if not len(go):
            return False
        mp = np.unique(self.a_par[go]) if lens is not None else self.a_par[go]
        src = mp[self.n_kind[mp] == _SRC]
        if len(src):
            f = self.n_flow[src]
            self.vals[self.f_val[f] + self.cout[src]] = self.mem[self.f_addr[f] + self.cout[src]]
        self.cout[mp] += 1
        child, lat = self.a_child[go], self.a_lat[go]
        for d in self.latencies:
            self.slots[(t + d) % self.ring].append(child[lat == d])
        self.in_flight += len(go)
        links = self.a_link[go]
        self.busy[links] += 1
        self.rr[links] = self.a_flow[go]
        return True
