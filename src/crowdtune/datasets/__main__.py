"""``python -m crowdtune.datasets``: refit the shipped ``movielens_crowd.json`` on the data home."""

from crowdtune.datasets.synthetic import write_movielens_crowd_json

if __name__ == "__main__":
    write_movielens_crowd_json()
