"""fashion_mnist_trqat.py on several processes: DistributedDataParallel with TR scheduling.

    npx trqat run --nproc-per-node 2 -- python examples/fashion_mnist_ddp.py --steps 500   # any torch
    npx trqat run -- torchrun --nproc_per_node 2 examples/fashion_mnist_ddp.py --steps 500  # torch >= 2

Every rank builds the same model, quantizes it, makes its own trqat Client and trains on its share
of each batch; DDP averages the gradients, the controller gives every rank the same learning rates
(and checks that every rank measured the same transitions). docs/plugin.md walks through it.
"""
import argparse
import json
import os
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, Subset
from trqat.adapt import quantize
from trqat.client import Client

from fashion_mnist_trqat import SmallCNN, evaluate, load_split


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist", help="folder with the IDX files")
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=128, help="per step, over all ranks")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--test-subset", type=int, default=None, help="evaluate on the first N test images")
    parser.add_argument("--ddp-first", action="store_true", help="wrap the model in DDP before making the Client")
    parser.add_argument("--record", default=None, help="folder for each rank's own record (rank-N.jsonl)")
    args = parser.parse_args()

    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")  # RANK, WORLD_SIZE, MASTER_* from the launcher
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)  # the same initial model on every rank (DDP also broadcasts rank 0's)
    train_set, test_set = load_split(args.data, "train"), load_split(args.data, "t10k")
    if args.test_subset:
        test_set = Subset(test_set, range(args.test_subset))
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=0, drop_last=True)
    loader = DataLoader(train_set, batch_size=args.batch_size // world, sampler=sampler, drop_last=True)

    model = SmallCNN()
    quantize(model, weight_bits=2, act_bits=2)  # activation scales are set from the first batch, averaged over ranks
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    if args.ddp_first:
        net = DDP(model)
        client = Client(model=net, optimizer=optimizer, total_steps=args.steps)
    else:
        client = Client(model=model, optimizer=optimizer, total_steps=args.steps)
        net = DDP(model)
    record = open(os.path.join(args.record, f"rank-{rank}.jsonl"), "w") if args.record else None

    step, epoch, started = 0, 0, time.time()
    while step < args.steps:
        sampler.set_epoch(epoch)
        for x, y in loader:
            out = net(x)
            loss = F.cross_entropy(out, y)
            optimizer.zero_grad()
            loss.backward()
            lrs = client.step(loss, correct=(out.argmax(1) == y).sum(), samples=len(y))
            optimizer.step()
            if record:  # what this rank measured and applied
                record.write(json.dumps({"step": lrs.step, "counts": client.last_counts, "lr_quant": lrs.lr_quant,
                                         "lr_other": lrs.lr_other}) + "\n")
            step += 1
            if rank == 0 and (step % 100 == 0 or step == args.steps):
                print(f"step {step}/{args.steps}  loss {loss.item():.4f}  {time.time() - started:.0f} s", flush=True)
            if step == args.steps:
                break
        epoch += 1

    if record:
        scales = [float(m.act_scale) for m in model.modules() if hasattr(m, "act_scale")]
        weights = float(sum(p.double().sum() for p in model.parameters()))
        record.write(json.dumps({"act_scales": scales, "weights_sum": weights}) + "\n")
        record.close()
    if rank == 0:
        top1, test_loss = evaluate(model, test_set)
        client.evaluated(top1, test_loss, samples=len(test_set))
        print(f"test top-1 {top1:.2f}%  loss {test_loss:.4f}")
    client.close()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
