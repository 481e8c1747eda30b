//! [`ListProxy`] and its live iterator.

use super::*;

/// A list in a manager, Python's `ListProxy`. Indexes may be negative
/// (counting from the end), as in Python.
///
/// # Examples
///
/// ```
/// use multiproc::Manager;
///
/// let manager = Manager::start()?;
/// let l = manager.list::<u32>()?;
/// l.extend([1, 2, 3])?;
/// l.push(&4)?;
/// assert_eq!(l.get(-1)?, 4);
/// assert_eq!(l.to_vec()?, vec![1, 2, 3, 4]);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ListProxy<T> {
    #[serde(deserialize_with = "ObjRef::de_typed::<T, _>")]
    obj: ObjRef,
    #[serde(skip)]
    _t: PhantomData<fn() -> T>,
}
proxy_common!(ListProxy<T> => T);

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// Appends `value` (Python's `append`).
    ///
    /// # Errors
    ///
    /// `Closed`/`Io` if the manager is gone (as for every method below).
    pub fn push(&self, value: &T) -> Result<()> {
        self.obj.unit(Op::ListPush(enc(value)?), "push")
    }

    /// Appends every item.
    ///
    /// # Errors
    ///
    /// As [`push`](ListProxy::push).
    pub fn extend<I: IntoIterator<Item = T>>(&self, items: I) -> Result<()> {
        let items = items
            .into_iter()
            .map(|v| enc(&v))
            .collect::<Result<Vec<_>>>()?;
        self.obj.unit(Op::ListExtend(items), "extend")
    }

    /// `l[index]`.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` (Python's `IndexError`) out of range;
    /// `Serialization` if the item is not a `T`.
    pub fn get(&self, index: i64) -> Result<T> {
        self.obj.value(Op::ListGet(index), "get")
    }

    /// `l[index] = value`.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` out of range.
    pub fn set(&self, index: i64, value: &T) -> Result<()> {
        self.obj.unit(Op::ListSet(index, enc(value)?), "set")
    }

    /// Inserts `value` before `index` (clamped, as in Python).
    ///
    /// # Errors
    ///
    /// As [`push`](ListProxy::push).
    pub fn insert(&self, index: i64, value: &T) -> Result<()> {
        self.obj.unit(Op::ListInsert(index, enc(value)?), "insert")
    }

    /// Removes and returns the item at `index` (the last one for `None`).
    ///
    /// # Errors
    ///
    /// `Empty` if the list is empty or the index is out of range.
    pub fn pop(&self, index: Option<i64>) -> Result<T> {
        self.obj.value(Op::ListPop(index), "pop")
    }

    /// Removes the first item equal to `value`; returns whether one was found.
    ///
    /// # Errors
    ///
    /// As [`push`](ListProxy::push).
    pub fn remove(&self, value: &T) -> Result<bool> {
        self.obj.boolean(Op::ListRemove(enc(value)?), "remove")
    }

    /// `len(l)`.
    ///
    /// # Errors
    ///
    /// As [`push`](ListProxy::push).
    pub fn len(&self) -> Result<usize> {
        self.obj.len("len")
    }

    /// `len(l) == 0`.
    ///
    /// # Errors
    ///
    /// As [`push`](ListProxy::push).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Removes everything.
    ///
    /// # Errors
    ///
    /// As [`push`](ListProxy::push).
    pub fn clear(&self) -> Result<()> {
        self.obj.unit(Op::Clear, "clear")
    }

    /// The whole list, copied here in one round trip: a snapshot, where
    /// [`iter`](ListProxy::iter) reads the list live.
    ///
    /// # Errors
    ///
    /// `Serialization` if an item is not a `T`.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.obj.values(Op::ListToVec, "to_vec")
    }

    /// Iterates over the list as it is at each step, as Python iterates a
    /// list proxy (`for x in l`): step `i` asks the manager for the item at
    /// index `i` then, and the iteration ends at the first index past the
    /// end. Changes made meanwhile, by anyone, show: items appended before
    /// the end is reached are yielded; removing an item before the current
    /// position makes the next one be skipped, as in Python.
    ///
    /// Each step is one round trip; [`to_vec`](ListProxy::to_vec) copies the
    /// whole list in one.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Manager;
    ///
    /// let manager = Manager::start()?;
    /// let l = manager.list_from([1u32, 2, 3])?;
    /// let mut it = l.iter();
    /// assert_eq!(it.next().transpose()?, Some(1));
    /// l.push(&4)?; // seen by the iteration under way
    /// let rest = it.collect::<Result<Vec<_>, _>>()?;
    /// assert_eq!(rest, [2, 3, 4]);
    /// let mut sum = 0;
    /// for x in &l {
    ///     sum += x?;
    /// }
    /// assert_eq!(sum, 10);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Each step yields `Err` if the item is not a `T`
    /// (`Serialization`) or the manager is gone (`Closed`/`Io`); the
    /// iteration ends after an error.
    pub fn iter(&self) -> ListIter<'_, T> {
        ListIter {
            list: self,
            next: 0,
            done: false,
        }
    }
}

/// A live iteration over a [`ListProxy`], made by [`ListProxy::iter`]:
/// each step reads the item at the next index from the manager. It yields
/// `Result<T>`, ends at the first index past the end of the list (then stays
/// ended), and ends after an error.
///
/// # Examples
///
/// ```
/// use multiproc::Manager;
///
/// let manager = Manager::start()?;
/// let l = manager.list_from(["a".to_string(), "b".to_string()])?;
/// let joined = l.iter().collect::<Result<Vec<_>, _>>()?.join("");
/// assert_eq!(joined, "ab");
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct ListIter<'a, T> {
    list: &'a ListProxy<T>,
    next: u64,
    done: bool,
}

impl<T> fmt::Debug for ListIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListIter")
            .field("list", &self.list.obj)
            .field("next", &self.next)
            .field("done", &self.done)
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> Iterator for ListIter<'_, T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        if self.done {
            return None;
        }
        match self.list.obj.maybe(Op::ListGetOpt(self.next), "iter") {
            Ok(Some(item)) => {
                self.next += 1;
                Some(Ok(item))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl<T: Serialize + DeserializeOwned> std::iter::FusedIterator for ListIter<'_, T> {}

impl<'a, T: Serialize + DeserializeOwned> IntoIterator for &'a ListProxy<T> {
    type Item = Result<T>;
    type IntoIter = ListIter<'a, T>;

    /// As [`ListProxy::iter`].
    fn into_iter(self) -> ListIter<'a, T> {
        self.iter()
    }
}
