//! The RFC 6962 Merkle tree over the event log (RFC 9162 section 2.1): a leaf is
//! SHA-256(0x00 || entry), which every event stores as its `leaf_hash`; a node is
//! SHA-256(0x01 || left || right), the left subtree holding the largest power of two of
//! leaves smaller than the tree. The tree head of the first N events fixes all of them: an
//! inclusion proof shows that one event is among them, with log2(N) hashes, and anyone can
//! check it offline with nothing but the head.

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The leaf hash of an entry: SHA-256(0x00 || entry).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(entry);
    hasher.finalize().into()
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The largest power of two smaller than `n` (n >= 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The tree head of `leaves` (leaf hashes): SHA-256 of nothing for no leaves.
pub fn root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return Sha256::digest([]).into();
    }
    let mut level: Vec<Hash> = leaves.to_vec();
    while level.len() > 1 {
        level = level_above(&level);
    }
    level[0]
}

/// The level above `below`, bottom up: pairs hashed, a last odd node carried up unchanged
/// (which is what the recursive definition of RFC 6962 gives).
fn level_above(below: &[Hash]) -> Vec<Hash> {
    below
        .chunks(2)
        .map(|pair| match pair {
            [left, right] => node_hash(left, right),
            [odd] => *odd,
            _ => unreachable!("chunks of two"),
        })
        .collect()
}

/// The inclusion proof of leaf `index` in the tree of `leaves` (RFC 6962 PATH), from the leaf
/// up; empty for a one-leaf tree. `None` when the index is not a leaf of the tree.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut proof = Vec::new();
    path(leaves, index, &mut proof);
    Some(proof)
}

fn path(leaves: &[Hash], index: usize, proof: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if index < k {
        path(&leaves[..k], index, proof);
        proof.push(root(&leaves[k..]));
    } else {
        path(&leaves[k..], index - k, proof);
        proof.push(root(&leaves[..k]));
    }
}

/// The consistency proof that the tree of the first `old_size` leaves is a prefix of the
/// tree of all `leaves` (RFC 6962 PROOF); `None` unless 0 < old_size <= leaves.len().
pub fn consistency_proof(leaves: &[Hash], old_size: usize) -> Option<Vec<Hash>> {
    if old_size == 0 || old_size > leaves.len() {
        return None;
    }
    let mut proof = Vec::new();
    subproof(old_size, leaves, true, &mut proof);
    Some(proof)
}

fn subproof(m: usize, leaves: &[Hash], whole: bool, proof: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !whole {
            proof.push(root(leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &leaves[..k], whole, proof);
        proof.push(root(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, proof);
        proof.push(root(&leaves[..k]));
    }
}

/// Whether `proof` shows the tree of `old_size` leaves with head `old_head` to be a prefix of
/// the tree of `new_size` leaves with head `new_head` (RFC 9162 section 2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_head: &Hash,
    new_head: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size == 0 || old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_head == new_head;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_head);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    fr == *old_head && sr == *new_head && sn == 0
}

/// A whole tree kept level by level (leaves first), for many proofs: built once in linear
/// time, each proof then costs log2(N) lookups.
pub struct Tree {
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    pub fn new(leaves: Vec<Hash>) -> Tree {
        let mut levels = vec![leaves];
        while let Some(below) = levels.last().filter(|level| level.len() > 1) {
            let above = level_above(below);
            levels.push(above);
        }
        Tree { levels }
    }

    pub fn size(&self) -> usize {
        self.levels[0].len()
    }

    pub fn leaves(&self) -> &[Hash] {
        &self.levels[0]
    }

    /// The tree head (as `root`).
    pub fn head(&self) -> Hash {
        match self.levels.last().and_then(|top| top.first()) {
            Some(head) if self.size() > 0 => *head,
            _ => root(&[]),
        }
    }

    /// The inclusion proof of leaf `index` (as `inclusion_proof`): at each level the sibling,
    /// when there is one (a last odd node is carried up without one).
    pub fn proof(&self, index: usize) -> Option<Vec<Hash>> {
        if index >= self.size() {
            return None;
        }
        let mut proof = Vec::new();
        let mut at = index;
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = at ^ 1;
            if sibling < level.len() {
                proof.push(level[sibling]);
            }
            at /= 2;
        }
        Some(proof)
    }
}

/// Whether `proof` shows `leaf` at `index` in a tree of `size` leaves whose head is `head`
/// (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], head: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut hash = *leaf;
    for sibling in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            hash = node_hash(sibling, &hash);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            hash = node_hash(&hash, sibling);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && hash == *head
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The entries of the RFC 6962 reference implementation's tests and its tree heads for
    /// the first 1 to 8 of them.
    const ENTRIES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const HEADS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn leaves(n: usize) -> Vec<Hash> {
        ENTRIES[..n]
            .iter()
            .map(|entry| leaf_hash(&hex::decode(entry).unwrap()))
            .collect()
    }

    /// `n` distinct leaves.
    fn numbered(n: usize) -> Vec<Hash> {
        (0..n as u64).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn every_older_tree_is_proved_a_prefix_of_a_newer_one() {
        let all = numbered(40);
        for new_size in 1..=40usize {
            let new_head = root(&all[..new_size]);
            for old_size in 1..=new_size {
                let old_head = root(&all[..old_size]);
                let proof = consistency_proof(&all[..new_size], old_size).unwrap();
                let (m, n) = (old_size as u64, new_size as u64);
                assert!(
                    verify_consistency(m, n, &old_head, &new_head, &proof),
                    "{old_size} -> {new_size}"
                );
                // Another old head (a rewritten history), or a bent proof: refused.
                let rewritten = root(&numbered(old_size + 1)[1..]);
                assert!(!verify_consistency(m, n, &rewritten, &new_head, &proof));
                if let Some(first) = proof.first() {
                    let mut bent = proof.clone();
                    bent[0] = node_hash(first, first);
                    assert!(!verify_consistency(m, n, &old_head, &new_head, &bent));
                }
            }
        }
        // The reference proofs' sizes: 1 -> 8 needs 3 hashes, 6 -> 8 needs 3, 2 -> 5 needs 2.
        let vectors = leaves(8);
        assert_eq!(consistency_proof(&vectors, 1).unwrap().len(), 3);
        assert_eq!(consistency_proof(&vectors, 6).unwrap().len(), 3);
        assert_eq!(consistency_proof(&vectors[..5], 2).unwrap().len(), 2);
    }

    #[test]
    fn tree_heads_match_the_reference_vectors() {
        assert_eq!(
            hex::encode(root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        for (n, head) in HEADS.iter().enumerate() {
            assert_eq!(hex::encode(root(&leaves(n + 1))), *head, "{} leaves", n + 1);
        }
    }

    #[test]
    fn every_leaf_proves_its_place_and_nothing_else_does() {
        for size in 1..=40usize {
            let tree = numbered(size);
            let head = root(&tree);
            for index in 0..size {
                let proof = inclusion_proof(&tree, index).unwrap();
                let (i, n) = (index as u64, size as u64);
                assert!(verify_inclusion(&tree[index], i, n, &proof, &head));
                // Another place, another size, another leaf or a changed proof: refused.
                if size > 1 {
                    let other = (index + 1) % size;
                    assert!(!verify_inclusion(
                        &tree[index],
                        other as u64,
                        n,
                        &proof,
                        &head
                    ));
                    assert!(!verify_inclusion(
                        &leaf_hash(b"forged"),
                        i,
                        n,
                        &proof,
                        &head
                    ));
                    let mut bent = proof.clone();
                    bent[0][0] ^= 1;
                    assert!(!verify_inclusion(&tree[index], i, n, &bent, &head));
                }
                // The head of a longer log (the size is signed with its head) does not
                // take an old proof.
                let longer = root(&numbered(size + 1));
                assert!(!verify_inclusion(&tree[index], i, n + 1, &proof, &longer));
            }
            assert!(inclusion_proof(&tree, size).is_none());
            // The level-by-level tree gives the same head and the same proofs.
            let levels = Tree::new(tree.clone());
            assert_eq!(levels.head(), head);
            for index in 0..size {
                assert_eq!(levels.proof(index), inclusion_proof(&tree, index));
            }
        }
    }
}
