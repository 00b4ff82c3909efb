// Online bin packing: priority() decides which open bin takes each arriving item.
// Items arrive one at a time and must be placed at once; the item goes to the open bin
// with the highest priority among those it fits in, or to a new bin when it fits none.
#include <math.h>
#include <stdio.h>

#define MAX_BINS 100000

// item: the item's size; remaining: free space of this bin (item <= remaining);
// capacity: every bin's size; index: the bin's position (0 = opened first);
// open_bins: how many bins are open. Higher priority wins; ties go to the lower index.
double priority(double item, double remaining, double capacity, int index, int open_bins) {
    double slack = remaining - item;  // free space left in this bin after the item
    double gap = slack / capacity;    // the same, as a share of a bin (0 = exact fit)
    double fill = item / capacity;    // the item's size as a share of a bin
    double score = 0.0;
    // EVOLVE-BLOCK-START
    score -= 1.0 * index;  // first fit: the oldest bin first
    score -= 0.0 * gap;    // best fit: the tightest bin first
    // EVOLVE-BLOCK-END
    (void)fill;
    (void)open_bins;
    return score;
}

// Frozen: read the capacity, then answer each item with the bin it goes to.
int main(void) {
    static double remaining[MAX_BINS];
    int open_bins = 0;
    double capacity, item;
    if (scanf("%lf", &capacity) != 1) return 1;
    while (scanf("%lf", &item) == 1) {
        int chosen = -1;
        double best = 0.0;
        for (int i = 0; i < open_bins; i++) {
            if (remaining[i] < item) continue;
            double p = priority(item, remaining[i], capacity, i, open_bins);
            if (chosen < 0 || p > best) {
                chosen = i;
                best = p;
            }
        }
        if (chosen < 0) {
            if (open_bins == MAX_BINS) return 2;
            chosen = open_bins++;
            remaining[chosen] = capacity;
        }
        remaining[chosen] -= item;
        printf("%d\n", chosen);
        fflush(stdout);
    }
    return 0;
}
